"""Data stage: loaders, cleaning operators, pipelines, versioned datasets (the Data issue)."""
