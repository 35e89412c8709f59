"""Training stage: one readable file per recipe, checkpoint and resume (the Training issue)."""
