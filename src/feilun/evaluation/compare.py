"""Comparing two EvalReports task by task: paired deltas, significance and flipped items.

Items are paired by id within a task of the same name. The delta of the task's primary metric
(or of another metric with per-item values, such as qa's `em`) gets a paired-bootstrap interval
and p-value; right/wrong values also get McNemar's exact test. Tasks run on different file
contents are still compared, but flagged `same_data: false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feilun.evaluation.metrics import mcnemar, paired_bootstrap

MAX_FLIPPED_LISTED = 50
DELTA_COLUMNS = ["task", "metric", "A", "B", "delta [95% CI]", "p", "flipped", "n"]


def item_values(task: dict[str, Any], metric: str) -> dict[str, float]:
    """Item id -> its value of `metric`, for the scored items that have one."""
    values = {}
    for item in task["items"]:
        scores = item.get("scores") or {}
        value = scores.get(metric, item.get("score") if metric == task["primary"] else None)
        if isinstance(value, int | float) and item.get("score") is not None:
            values[str(item["id"])] = float(value)
    return values


def item_metrics(task: dict[str, Any]) -> list[str]:
    """The task's metrics that have per-item values (the primary, and qa's em/f1/contains)."""
    found = {task["primary"]}
    for item in task["items"]:
        found.update(item.get("scores") or {})
    return [m for m in task["metrics"] if m in found]


def _flip(item: dict[str, Any], value: float) -> dict[str, Any]:
    keep = (
        *("gold", "pred", "generation", "references", "reference"),
        *("should_refuse", "refused", "in_process", "served"),
    )
    return {"score": value, **{k: item[k] for k in keep if k in item}}


def compare_tasks(
    a: dict[str, Any], b: dict[str, Any], seed: int, metric: str | None = None
) -> dict[str, Any]:
    """B minus A on one task's `metric` (default: primary): delta, p-values, flipped items."""
    metric = metric or a["primary"]
    values_a, values_b = item_values(a, metric), item_values(b, metric)
    ids = sorted(set(values_a) & set(values_b))
    xa = [values_a[i] for i in ids]
    xb = [values_b[i] for i in ids]
    test = paired_bootstrap(xa, xb, seed)
    is_binary = all(x in (0.0, 1.0) for x in xa + xb)
    result: dict[str, Any] = {
        "task": a["name"],
        "kind": a["kind"],
        "metric": metric,
        "same_data": a["sha256"] == b["sha256"],
        "n_paired": len(ids),
        "a": a["metrics"][metric]["value"],
        "b": b["metrics"][metric]["value"],
        "paired": test.to_json(),
        "metrics": {
            m: {
                "a": a["metrics"][m]["value"],
                "b": b["metrics"][m]["value"],
                "delta": b["metrics"][m]["value"] - a["metrics"][m]["value"],
            }
            for m in a["metrics"]
            if m in b["metrics"]
        },
    }
    if is_binary:
        only_a, only_b, p_value = mcnemar([x == 1.0 for x in xa], [x == 1.0 for x in xb])
        result["mcnemar"] = {"a_only_right": only_a, "b_only_right": only_b, "p_value": p_value}
    items_a = {str(i["id"]): i for i in a["items"]}
    items_b = {str(i["id"]): i for i in b["items"]}

    def flipped(ids: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "id": items_a[i]["id"],
                "a": _flip(items_a[i], values_a[i]),
                "b": _flip(items_b[i], values_b[i]),
            }
            for i in ids[:MAX_FLIPPED_LISTED]
        ]

    up = [i for i, x, y in zip(ids, xa, xb, strict=True) if y - x >= 0.5]
    down = [i for i, x, y in zip(ids, xa, xb, strict=True) if x - y >= 0.5]
    result["flipped"] = {
        "to_right": flipped(up),
        "to_wrong": flipped(down),
        "n_to_right": len(up),
        "n_to_wrong": len(down),
    }
    return result


def compare_payloads(
    a: dict[str, Any],
    b: dict[str, Any],
    seed: int = 1234,
    metrics: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every task both reports ran, B minus A, plus the tasks only one of them has.

    `metrics` picks, per task name, the metric compared instead of the primary one.
    """
    tasks_a = {t["name"]: t for t in a["tasks"]}
    tasks_b = {t["name"]: t for t in b["tasks"]}
    shared = [name for name in tasks_a if name in tasks_b]
    chosen = metrics or {}
    return {
        "a": {"model": a["model"], "suite": a["suite"]},
        "b": {"model": b["model"], "suite": b["suite"]},
        "tasks": [compare_tasks(tasks_a[n], tasks_b[n], seed, chosen.get(n)) for n in shared],
        "only_in_a": sorted(set(tasks_a) - set(tasks_b)),
        "only_in_b": sorted(set(tasks_b) - set(tasks_a)),
    }


def delta_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per compared task under `DELTA_COLUMNS`, as `feilun eval compare` prints them."""
    rows = []
    for task in result["tasks"]:
        test = task.get("mcnemar") or task["paired"]
        paired, flipped = task["paired"], task["flipped"]
        rows.append(
            [
                task["task"],
                task["metric"],
                f"{task['a']:.4f}",
                f"{task['b']:.4f}",
                f"{paired['delta']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]",
                f"{test['p_value']:.4f}",
                f"+{flipped['n_to_right']} / -{flipped['n_to_wrong']}",
                str(task["n_paired"]),
            ]
        )
    return rows
