"""Governance: moderation, AIGC labels, audit log, filing pack (the Governance issue)."""
