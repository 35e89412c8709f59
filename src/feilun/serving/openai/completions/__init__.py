"""`POST /v1/completions`: raw prompts, run through the model's chat template."""
