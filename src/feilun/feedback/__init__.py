"""Feedback stage: traces and ratings curated into new dataset versions (the Flywheel issue)."""
