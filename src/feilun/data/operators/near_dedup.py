"""Near-duplicate removal: MinHash LSH over character n-grams, keeping the first occurrence.

Character n-grams (after dropping whitespace and punctuation) need no word segmenter, so
Chinese, English and mixed text are shingled alike, and a typo breaks only `ngram` shingles.
An item is removed when an earlier kept item shares an LSH bucket with it and their estimated
Jaccard similarity is ≥ `threshold`. Items with no letters or digits are always kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np
import pydantic

from feilun.core.errors import ConfigError
from feilun.data.items import Item
from feilun.data.minhash import find_near_duplicates, optimal_bands, shingle_hashes, signature

logger = logging.getLogger(__name__)


class NearDedup:
    """Removes items whose MinHash-estimated Jaccard with an earlier kept item is ≥ threshold."""

    name: ClassVar[str] = "near_dedup"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of `near_dedup` (YAML keys)."""

        model_config = pydantic.ConfigDict(extra="forbid")
        threshold: float = pydantic.Field(
            0.8, gt=0, le=1, description="Jaccard similarity of shingle sets at which to remove."
        )
        num_perm: int = pydantic.Field(
            128, ge=2, le=4096, description="MinHash permutations: more is slower but sharper."
        )
        ngram: int = pydantic.Field(
            5, ge=1, le=64, description="Characters per shingle (whitespace/punctuation dropped)."
        )
        seed: int = pydantic.Field(
            1, ge=0, lt=2**32, description="Seed of the permutations; fixed for reproducibility."
        )
        bands: int | None = pydantic.Field(
            None, ge=1, description="LSH bands; empty: chosen from threshold and num_perm."
        )
        rows: int | None = pydantic.Field(
            None, ge=1, description="Signature rows per LSH band; set together with bands."
        )

        @pydantic.model_validator(mode="after")
        def _check_banding(self) -> Self:
            if (self.bands is None) != (self.rows is None):
                raise ValueError(
                    f"bands={self.bands} and rows={self.rows}: set both or neither "
                    "(neither picks them from threshold and num_perm)"
                )
            product = (self.bands or 0) * (self.rows or 0)
            if product > self.num_perm:
                raise ValueError(
                    f"bands={self.bands} x rows={self.rows} = {product} must be ≤ "
                    f"num_perm={self.num_perm}; lower one or raise num_perm"
                )
            return self

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or self.Params()
        p = self.params
        if p.bands is not None and p.rows is not None:
            self.bands, self.rows = p.bands, p.rows
        else:
            self.bands, self.rows = optimal_bands(p.threshold, p.num_perm)

    def key(self, item: Item) -> bytes | None:
        """The item's MinHash signature (num_perm uint32, as bytes); None if it has no shingles."""
        hashes = shingle_hashes(item.text, self.params.ngram)
        if not len(hashes):
            return None
        return signature(hashes, self.params.num_perm, self.params.seed).tobytes()

    def select(self, keyed: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
        """{id: reason} of each item that near-duplicates an earlier kept item."""
        size = 4 * self.params.num_perm
        present = [(item_id, key) for item_id, key in keyed if key is not None]
        for item_id, key in present:
            if len(key) != size:
                raise ConfigError(
                    f"near_dedup key of item {item_id!r} has {len(key)} bytes, expected {size} "
                    f"(num_perm={self.params.num_perm})",
                    "compute every key with the same near_dedup operator that runs select()",
                )
        if not present:
            return {}
        signatures = np.frombuffer(b"".join(key for _, key in present), dtype=np.uint32)
        signatures = signatures.reshape(len(present), self.params.num_perm)
        found = find_near_duplicates(signatures, self.params.threshold, self.bands, self.rows)
        removed = {
            present[i][0]: f"near_duplicate: of {present[kept][0]} (jaccard≈{similarity:.2f})"
            for i, (kept, similarity) in found.items()
        }
        logger.info(
            "near_dedup removed %d of %d items (bands=%d, rows=%d)",
            len(removed),
            len(keyed),
            self.bands,
            self.rows,
        )
        return removed
