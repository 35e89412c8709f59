"""The in-process engine, streaming: consecutive row operators form one chain of generators.

A set operator is the only point where the items that reached it are held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sized

from feilun.data.items import Item, Rejection
from feilun.data.pipeline import (
    OperatorReport,
    PipelineResult,
    ProgressFn,
    apply_row,
    count_reason,
    key_of,
    new_reports,
    select_removed,
    unique_items,
)
from feilun.data.recipes import Recipe, Step


class LocalEngine:
    """Runs every operator in this process."""

    name = "local"

    def run(
        self, items: Iterable[Item], recipe: Recipe, progress: ProgressFn | None = None
    ) -> PipelineResult:
        """Kept items in input order, rejections grouped by step, one report per step."""
        reports = new_reports(recipe)
        rejected: list[list[Rejection]] = [[] for _ in recipe.steps]
        total = len(items) if isinstance(items, Sized) else None
        stream: Iterable[Item] = unique_items(items)
        for index, step in enumerate(recipe.steps):
            report, removed = reports[index], rejected[index]
            if step.is_set_operator:
                held = list(stream)
                selected = _select(held, step, report, removed)
                if progress is not None:
                    progress(index, step.op, len(held), len(held))
                stream, total = selected, len(selected)
            else:
                stream = _process(stream, index, step, report, removed, total, progress)
                total = None  # later row steps see only what this one keeps
        kept = list(stream)
        if progress is not None:
            for index, report in enumerate(reports):
                progress(index, report.operator, report.count_in, report.count_in)
        return PipelineResult(
            kept=kept, rejected=[r for step in rejected for r in step], reports=reports
        )


def _process(
    items: Iterable[Item],
    index: int,
    step: Step,
    report: OperatorReport,
    rejected: list[Rejection],
    total: int | None,
    progress: ProgressFn | None,
) -> Iterator[Item]:
    for item in items:
        report.count_in += 1
        started = time.perf_counter()
        result = apply_row(step, item)
        report.wall_s += time.perf_counter() - started
        if progress is not None:
            progress(index, step.op, report.count_in, total)
        if isinstance(result, Rejection):
            rejected.append(result)
            count_reason(report, result.reason)
        else:
            report.count_out += 1
            yield result


def _select(
    items: list[Item],
    step: Step,
    report: OperatorReport,
    rejected: list[Rejection],
) -> list[Item]:
    started = time.perf_counter()
    keyed = [(item.id, key_of(step, item)) for item in items]
    removed = select_removed(step, keyed)
    kept = []
    for item in items:
        reason = removed.get(item.id)
        if reason is None:
            kept.append(item)
        else:
            rejected.append(Rejection(item=item, operator=step.op, reason=reason))
            count_reason(report, reason)
    report.count_in, report.count_out = len(items), len(kept)
    report.wall_s += time.perf_counter() - started
    return kept


ENGINE = LocalEngine()
