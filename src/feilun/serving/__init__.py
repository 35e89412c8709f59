"""Serving stage: the OpenAI-compatible gateway with tenants, quotas, metering and traces."""
