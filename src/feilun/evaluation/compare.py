"""Comparing two EvalReports task by task: paired deltas, significance and flipped items.

Items are paired by id within a task of the same name. The delta of the task's primary metric
gets a paired-bootstrap interval and p-value; right/wrong tasks also get McNemar's exact test.
Tasks run on different file contents are still compared, but flagged `same_data: false`.
"""

from __future__ import annotations

from typing import Any

from feilun.evaluation.metrics import mcnemar, paired_bootstrap

MAX_FLIPPED_LISTED = 50


def _scored(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(i["id"]): i for i in task["items"] if isinstance(i.get("score"), int | float)}


def _flip(item_a: dict[str, Any], item_b: dict[str, Any]) -> dict[str, Any]:
    keep = ("gold", "pred", "generation", "references")
    return {
        "id": item_a["id"],
        "a": {"score": item_a["score"], **{k: item_a[k] for k in keep if k in item_a}},
        "b": {"score": item_b["score"], **{k: item_b[k] for k in keep if k in item_b}},
    }


def compare_tasks(a: dict[str, Any], b: dict[str, Any], seed: int) -> dict[str, Any]:
    """B minus A on one task: primary delta with interval and p-values, and flipped items."""
    metric = a["primary"]
    items_a, items_b = _scored(a), _scored(b)
    ids = sorted(set(items_a) & set(items_b))
    xa = [float(items_a[i]["score"]) for i in ids]
    xb = [float(items_b[i]["score"]) for i in ids]
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
    flipped_up = [i for i, x, y in zip(ids, xa, xb, strict=True) if y - x >= 0.5]
    flipped_down = [i for i, x, y in zip(ids, xa, xb, strict=True) if x - y >= 0.5]
    result["flipped"] = {
        "to_right": [_flip(items_a[i], items_b[i]) for i in flipped_up[:MAX_FLIPPED_LISTED]],
        "to_wrong": [_flip(items_a[i], items_b[i]) for i in flipped_down[:MAX_FLIPPED_LISTED]],
        "n_to_right": len(flipped_up),
        "n_to_wrong": len(flipped_down),
    }
    return result


def compare_payloads(a: dict[str, Any], b: dict[str, Any], seed: int = 1234) -> dict[str, Any]:
    """Every task both reports ran, B minus A, plus the tasks only one of them has."""
    tasks_a = {t["name"]: t for t in a["tasks"]}
    tasks_b = {t["name"]: t for t in b["tasks"]}
    shared = [name for name in tasks_a if name in tasks_b]
    return {
        "a": {"model": a["model"], "suite": a["suite"]},
        "b": {"model": b["model"], "suite": b["suite"]},
        "tasks": [compare_tasks(tasks_a[n], tasks_b[n], seed) for n in shared],
        "only_in_a": sorted(set(tasks_a) - set(tasks_b)),
        "only_in_b": sorted(set(tasks_b) - set(tasks_a)),
    }
