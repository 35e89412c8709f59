"""The gate step keeps, per task, the metrics a turn's report shows."""

from __future__ import annotations

from typing import Any

from feilun.app.flywheel.gating import _metrics


def test_the_turn_keeps_the_metrics_the_gate_rules_test() -> None:
    """Besides each task's primary metric, the one the gate tested (its comparison's)."""

    def payload(value: float) -> dict[str, Any]:
        interval = {"value": value, "low": value - 0.1, "high": value + 0.1}
        metrics = {"f1": interval, "em": interval, "contains": interval}
        return {
            "tasks": [
                {"name": name, "kind": "qa", "primary": "f1", "metrics": metrics}
                for name in ("handbook", "general", "other")
            ]
        }

    # As the gate compares under target.metric em (handbook), drop_metrics contains (general).
    comparison = [
        {"task": "handbook", "metric": "em"},
        {"task": "general", "metric": "contains"},
        {"task": "other", "metric": "f1"},
    ]
    kept = _metrics(comparison, payload(0.5), payload(0.4))
    assert {name: list(task["metrics"]) for name, task in kept.items()} == {
        "handbook": ["f1", "em"],
        "general": ["f1", "contains"],
        "other": ["f1"],
    }
    assert kept["handbook"]["metrics"]["em"]["incumbent"]["value"] == 0.4
