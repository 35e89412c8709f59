"""Run a cleaning recipe over items on a registered engine, with a report per operator.

Every engine (`feilun.engines`: local, ray) returns the same kept items in input order, the
same rejections (grouped by step, then in input order) and the same counts: the rules that
make that true — checking what operators return, naming reasons — live here and are shared.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from feilun.core.errors import ConfigError, PluginError
from feilun.core.records import Document
from feilun.core.registry import lookup
from feilun.data.collections import document_source_id
from feilun.data.items import Item, Rejection
from feilun.data.recipes import Recipe, Step

logger = logging.getLogger(__name__)

#: Called as items pass: (step index, operator name, items done, items in or None if unknown).
ProgressFn = Callable[[int, str, int, int | None], None]


@dataclass
class OperatorReport:
    """What one operator of a run did."""

    operator: str
    version: str
    count_in: int = 0
    count_out: int = 0
    removed_by_reason: dict[str, int] = field(default_factory=dict)  # category → count
    wall_s: float = 0.0  # time spent inside the operator (summed over workers)

    @property
    def removed(self) -> int:
        """Items this operator removed."""
        return self.count_in - self.count_out

    def to_json(self) -> dict[str, Any]:
        """A plain dict for manifests and `--json`."""
        return asdict(self)


@dataclass
class PipelineResult:
    """Kept items in input order, rejections, and one report per step."""

    kept: list[Item]
    rejected: list[Rejection]
    reports: list[OperatorReport]


class Engine(Protocol):
    """Runs a recipe's steps over items. Registered under `feilun.engines`."""

    def run(
        self, items: Iterable[Item], recipe: Recipe, progress: ProgressFn | None = None
    ) -> PipelineResult:
        """Kept items, rejections and reports; see the module docstring for the guarantees."""
        ...


def run_pipeline(
    items: Iterable[Item],
    recipe: Recipe,
    engine: str = "local",
    progress: ProgressFn | None = None,
) -> PipelineResult:
    """Run `recipe` over `items` on the named engine."""
    runner: Engine = lookup("engines", engine)
    logger.info("running %d operator(s) on the %s engine", len(recipe.steps), engine)
    result = runner.run(items, recipe, progress)
    for report in result.reports:
        logger.info(
            "%s: %d in, %d out, removed %s in %.2fs",
            report.operator,
            report.count_in,
            report.count_out,
            report.removed_by_reason,
            report.wall_s,
        )
    return result


def items_from_documents(documents: Iterable[Document]) -> list[Item]:
    """One Item per Document (id = document id); one per row of a tabular Document.

    A tabular Document has `meta["row_starts"]`: the offset of each row in its text. Row n
    (from 1) becomes the item `<document id>#<n>`. `meta["source_id"]` is the id the source
    gives the item: the Document's path, or a row's own `_id`/`id` (else `<path>#<n>`).
    """
    items: list[Item] = []
    for doc in documents:
        source_id = document_source_id(doc)
        meta = {
            "document_id": doc.id,
            "source_id": source_id,
            "collection": doc.collection,
            "source": doc.source,
            "title": doc.title,
            "language": doc.language,
            "media_type": doc.media_type,
        }
        starts = doc.meta.get("row_starts")
        if not starts:
            items.append(Item(id=doc.id, text=doc.text, meta=meta))
            continue
        ends = [*starts[1:], len(doc.text)]
        row_ids = doc.meta.get("row_ids") or []
        for row, (start, end) in enumerate(zip(starts, ends, strict=True), 1):
            text = doc.text[start:end].rstrip("\r\n")
            own = row_ids[row - 1] if row <= len(row_ids) else ""
            fallback = f"{source_id}#{row}" if source_id else ""
            row_meta = {**meta, "row": row, "source_id": own or fallback}
            items.append(Item(id=f"{doc.id}#{row}", text=text, meta=row_meta))
    return items


def new_reports(recipe: Recipe) -> list[OperatorReport]:
    """Empty reports, one per step."""
    return [OperatorReport(operator=s.op, version=s.version) for s in recipe.steps]


def unique_items(items: Iterable[Item]) -> Iterator[Item]:
    """Copies of `items` (operators may rewrite them in place); a repeated id is an error."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ConfigError(
                f"item id {item.id!r} appears twice in the pipeline input",
                "give every item a unique id (a document id, or `<document id>#<row>`)",
            )
        seen.add(item.id)
        yield Item(id=item.id, text=item.text, meta=copy.deepcopy(item.meta))


def reason_category(reason: str) -> str:
    """The category word of a reason: `too_short: 12 chars < 50` → `too_short`."""
    return reason.split(":", 1)[0].strip() or "unspecified"


def count_reason(report: OperatorReport, reason: str) -> None:
    """Add one removal to a report's counts by category."""
    category = reason_category(reason)
    report.removed_by_reason[category] = report.removed_by_reason.get(category, 0) + 1


def apply_row(step: Step, item: Item) -> Item | Rejection:
    """Run a row operator on one item, checking what it returns."""
    try:
        result = step.operator.process(item)
    except Exception as e:
        e.add_note(f"raised by operator {step.op!r} on item {item.id!r}")
        raise
    if isinstance(result, Rejection):
        _check_reason(step, item.id, result.reason)
        if result.operator != step.op:
            result = Rejection(item=result.item, operator=step.op, reason=result.reason)
        return result
    if not isinstance(result, Item):
        raise PluginError(
            f"operator {step.op!r} returned {type(result).__name__} for item {item.id!r}",
            "a row operator's process() must return the Item (possibly rewritten) or a Rejection",
        )
    if result.id != item.id:
        raise PluginError(
            f"operator {step.op!r} changed item id {item.id!r} to {result.id!r}",
            "keep the id: it links the item to its document across runs",
        )
    return result


def key_of(step: Step, item: Item) -> Any:
    """A set operator's key of one item."""
    try:
        return step.operator.key(item)
    except Exception as e:
        e.add_note(f"raised by operator {step.op!r} computing the key of item {item.id!r}")
        raise


def select_removed(step: Step, keyed: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """Run a set operator's `select` over (id, key) in input order; check its answer."""
    try:
        removed = step.operator.select(keyed)
    except Exception as e:
        e.add_note(f"raised by operator {step.op!r} in select() over {len(keyed)} items")
        raise
    if not isinstance(removed, dict):
        raise PluginError(
            f"operator {step.op!r} select() returned {type(removed).__name__}",
            "return a dict {item id: reason} of the items to remove",
        )
    ids = {item_id for item_id, _ in keyed}
    unknown = [i for i in removed if i not in ids]
    if unknown:
        raise PluginError(
            f"operator {step.op!r} select() removed ids it was not given: {unknown[:3]}",
            "only return ids from the (id, key) pairs passed to select()",
        )
    for item_id, reason in removed.items():
        _check_reason(step, item_id, reason)
    return removed


def _check_reason(step: Step, item_id: str, reason: Any) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise PluginError(
            f"operator {step.op!r} removed item {item_id!r} without a reason ({reason!r})",
            "give a reason starting with a category word, e.g. 'too_short: 12 chars < 50'",
        )
