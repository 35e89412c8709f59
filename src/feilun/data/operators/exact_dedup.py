"""Exact duplicate removal: items whose text is identical after a light canonicalisation.

The key is a 16-byte BLAKE2b digest of the canonical text, so keys are small, stable across
processes and machines, and the first occurrence in pipeline order is the one kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import ClassVar

import pydantic

from feilun.data.items import Item

logger = logging.getLogger(__name__)


class ExactDedup:
    """Removes items whose canonical text equals that of an earlier item."""

    name: ClassVar[str] = "exact_dedup"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of `exact_dedup` (YAML keys)."""

        model_config = pydantic.ConfigDict(extra="forbid")
        ignore_whitespace: bool = pydantic.Field(
            True, description="Drop all whitespace before comparing (line wraps, indents, spaces)."
        )
        ignore_case: bool = pydantic.Field(
            False, description="Compare case-folded text ('Pipeline' equals 'PIPELINE')."
        )

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or self.Params()

    def canonical_text(self, text: str) -> str:
        """The text as compared: whitespace and case dropped if the params say so."""
        if self.params.ignore_whitespace:
            text = "".join(text.split())  # str.split() knows Unicode spaces (U+3000, NBSP…)
        if self.params.ignore_case:
            text = text.casefold()
        return text

    def key(self, item: Item) -> bytes:
        """16-byte digest of the canonical text."""
        canonical = self.canonical_text(item.text).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(canonical, digest_size=16).digest()

    def select(self, keyed: Sequence[tuple[str, bytes]]) -> dict[str, str]:
        """{id: reason} of each item whose key an earlier item already had."""
        first: dict[bytes, str] = {}
        removed: dict[str, str] = {}
        for item_id, key in keyed:
            kept = first.setdefault(key, item_id)
            if kept != item_id:
                removed[item_id] = f"exact_duplicate: of {kept}"
        logger.info("exact_dedup removed %d of %d items", len(removed), len(keyed))
        return removed
