"""Compute: job queue, devices, checkpoint-aware retries, energy metering, Ray (later issues)."""
