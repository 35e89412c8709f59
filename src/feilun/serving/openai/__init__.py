"""OpenAI-compatible endpoints, one folder each: `router.py` (thin), `protocol.py`, `service.py`."""
