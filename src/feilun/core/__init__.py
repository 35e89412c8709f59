"""Foundation: records, Protocols, plugin registry, errors and settings (stdlib + pydantic only)."""
