"""Serving stage: the OpenAI-compatible gateway with tenants, quotas and traces (the Serving issue)."""
