"""Ranking pieces: top-k over a score array, reciprocal rank fusion, the reranker hook.

RRF gives a chunk `Σ weight_m / (rrf_k + rank_m)` over the rankings it appears in (rank from
1), so BM25 scores and cosine similarities, which live on different scales, never need to be
made comparable. Ties break by chunk order, so a ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from feilun.knowledge.search import ChunkHit

DEFAULT_RRF_K = 60


@runtime_checkable
class Reranker(Protocol):
    """Reorders (and may rescore or drop) the fused candidates of a query, best first."""

    def rerank(self, query: str, hits: Sequence[ChunkHit]) -> list[ChunkHit]:
        """The hits in their new order."""
        ...


def top_k(
    scores: np.ndarray, k: int, mask: np.ndarray | None = None, *, is_positive_only: bool = False
) -> np.ndarray:
    """Positions of the `k` best scores (N,), best first; masked-out positions never appear."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.lexsort((best, -scores[best]))]
    keep = scores[best] > 0 if is_positive_only else np.isfinite(scores[best])
    return best[keep]


def fuse_rrf(
    rankings: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    rrf_k: int = DEFAULT_RRF_K,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, fused scores), best first, of the union of several rankings.

    Equal fused scores go by rank in the first ranking (BM25 when fusing with it: exact terms
    win ties), then by position.
    """
    fused: dict[int, float] = {}
    for mode, ranking in rankings.items():
        weight = weights.get(mode, 1.0)
        for rank, position in enumerate(ranking.tolist(), 1):
            fused[position] = fused.get(position, 0.0) + weight / (rrf_k + rank)
    first = next(iter(rankings.values()), np.zeros(0, dtype=np.int64)).tolist()
    first_rank = {position: rank for rank, position in enumerate(first)}
    unranked = len(first)
    order = sorted(
        fused.items(), key=lambda item: (-item[1], first_rank.get(item[0], unranked), item[0])
    )
    positions = np.array([p for p, _ in order], dtype=np.int64)
    return positions, np.array([s for _, s in order], dtype=np.float64)
