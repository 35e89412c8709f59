"""Evaluation stage: tasks, graders, reports and the promotion gate (the Evaluation issue)."""
