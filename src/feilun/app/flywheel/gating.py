"""The gate step: `evaluation.gate` on the two reports; the verdict and each task's scores.

`metrics` keeps, per task, the primary metric, the one the rules test if another (`metric`,
`drop_metrics`), and a safety task's refusal rates, of both models with their 95% intervals,
so the report reads the turn's state alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feilun.app.flywheel.context import TurnContext
from feilun.evaluation.gate import evaluate_gate, load_rules
from feilun.evaluation.reports import find_report, load_payload

SAFETY_METRICS = ("refusal_rate", "false_refusal_rate")


def gate(ctx: TurnContext) -> dict[str, Any]:
    """The gate's verdict on candidate vs incumbent."""
    rules = load_rules(Path(ctx.config.gate.rules))
    evaluated = ctx.outputs("evaluate")
    ws = ctx.workspace
    candidate, incumbent = (
        load_payload(ws.artifacts, find_report(ws.catalog, evaluated[f"{role}_report"]))
        for role in ("candidate", "incumbent")
    )
    verdict = evaluate_gate(rules, candidate, incumbent)
    return {
        "passed": verdict["passed"],
        "verdict": "passed" if verdict["passed"] else "blocked",
        "target": rules.target.task,
        "checks": verdict["checks"],
        "reasons": verdict["reasons"],
        "metrics": _metrics(verdict["comparison"], candidate, incumbent),
        "comparison": verdict["comparison"],
    }


def _metrics(
    comparison: list[dict[str, Any]], candidate: dict[str, Any], incumbent: dict[str, Any]
) -> dict[str, Any]:
    """Per shared task: its kind and `{metric: {candidate: {value, low, high}, incumbent}}`.

    Besides the primary (or the safety) metrics, each task shows the metric the gate tested.
    """
    tested = {t["task"]: t["metric"] for t in comparison}
    before = {t["name"]: t for t in incumbent["tasks"]}
    out: dict[str, Any] = {}
    for task in candidate["tasks"]:
        other = before.get(task["name"])
        if other is None:
            continue
        names = SAFETY_METRICS if task["kind"] == "safety" else (task["primary"],)
        if task["name"] in tested:
            names = tuple(dict.fromkeys((*names, tested[task["name"]])))
        out[task["name"]] = {
            "kind": task["kind"],
            "metrics": {
                m: {"candidate": _interval(task, m), "incumbent": _interval(other, m)}
                for m in names
                if m in task["metrics"] and m in other["metrics"]
            },
        }
    return out


def _interval(task: dict[str, Any], metric: str) -> dict[str, float]:
    value = task["metrics"][metric]
    return {"value": value["value"], "low": value["low"], "high": value["high"]}
