"""What flows through a cleaning pipeline: Items, operators, and the Rejections kept.

Operators keep, rewrite or reject items; every rejection is kept for inspection.

Row operators see one Item at a time, so any engine (in-process, Ray Data) can run them in
parallel. Set operators (dedup) need the whole set: they compute a small per-item `key` in
parallel, then one `select` over all keys decides — so every engine removes the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass
class Item:
    """One unit of text: a document, or one row of a tabular file."""

    id: str  # stable across runs: "<document id>" or "<document id>#<row>"
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # document_id, source, title, language…


@dataclass(frozen=True)
class Rejection:
    """An item an operator removed, and why (a reason a person understands)."""

    item: Item
    operator: str
    reason: str


class RowOperator(Protocol):
    """Keeps, rewrites or rejects one item at a time."""

    name: ClassVar[str]
    version: ClassVar[str]

    def process(self, item: Item) -> Item | Rejection:
        """The item (possibly rewritten) to keep, or a Rejection."""
        ...


class SetOperator(Protocol):
    """Decides over the whole set, from a per-item key computed in parallel."""

    name: ClassVar[str]
    version: ClassVar[str]

    def key(self, item: Item) -> Any:
        """A small, picklable summary of the item (a hash, a MinHash signature)."""
        ...

    def select(self, keyed: Sequence[tuple[str, Any]]) -> dict[str, str]:
        """Given (item id, key) in pipeline order: {id of each removed item: reason}."""
        ...
