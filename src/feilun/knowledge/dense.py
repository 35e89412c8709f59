"""Dense index: one L2-normalised embedder vector per chunk, searched exactly (or by a server).

An exact inner-product search over a (N, D) float32 matrix is one matrix-vector product:
about a millisecond for 10k chunks of 384 dimensions, exact, and with nothing to tune
(`benchmarks/retrieval.py` measures it). The index remembers which embedder made it, and a
query vector from another embedder is refused.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from feilun.core.errors import ConfigError
from feilun.core.protocols import Embedder
from feilun.knowledge.fusion import top_k

EMBED_BATCH = 64  # texts per embedder call; also how often progress is reported

ProgressFn = Callable[[int, int], None]  # (done, total)


class VectorStore(Protocol):
    """A server that holds the vectors of KB versions and finds nearest ones (pgvector)."""

    def write(self, table: str, chunk_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store the vectors (N, D) of one KB version under `table`, unless it is there."""
        ...

    def search(
        self, table: str, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk positions, cosine similarities) of the `k` nearest, nearest first."""
        ...

    def drop(self, table: str) -> None:
        """Forget the vectors stored under `table`."""
        ...


@dataclass(frozen=True)
class DenseIndex:
    """Chunk vectors of one embedder, searched in process or, with a `store`, by the server."""

    embedder: str
    vectors: np.ndarray  # (N, D) float32, rows L2-normalised
    store: VectorStore | None = None
    table: str = ""  # the KB version's table in `store`

    @property
    def dimension(self) -> int:
        """Vector size."""
        return int(self.vectors.shape[1])

    def score(self, query: np.ndarray) -> np.ndarray:
        """Inner product (cosine) of every chunk with a normalised query vector (D,)."""
        return self.vectors @ query.astype(np.float32, copy=False)  # (N,)

    def top(
        self, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cosine similarities) of the `k` chunks nearest to `query`, best first."""
        if self.store is not None:
            return self.store.search(self.table, query, k, mask)
        scores = self.score(query)
        best = top_k(scores, k, mask)
        return best, scores[best]


def check_embedder(index_embedder: str, embedder: Embedder, what: str) -> None:
    """Refuse an embedder other than the one `what` was built with, naming both."""
    if embedder.name != index_embedder:
        raise ConfigError(
            f"{what} was built with embedder {index_embedder!r}, but the query embedder is "
            f"{embedder.name!r}; vectors of different embedders cannot be compared",
            f"query with {index_embedder!r}, or rebuild it with {embedder.name!r}",
        )


def embed_texts(
    embedder: Embedder, texts: Sequence[str], progress: ProgressFn | None = None
) -> np.ndarray:
    """Vectors (N, D) of `texts`, embedded shortest first so batches carry little padding."""
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), EMBED_BATCH):
        rows = order[start : start + EMBED_BATCH]
        vectors[rows] = np.asarray(embedder.embed([texts[i] for i in rows]), dtype=np.float32)
        if progress is not None:
            progress(min(start + EMBED_BATCH, len(order)), len(order))
    return vectors


def embed_query(embedder: Embedder, query: str) -> np.ndarray:
    """The vector (D,) of one query."""
    return np.asarray(embedder.embed([query])[0], dtype=np.float32)


def dense_to_bytes(index: DenseIndex) -> bytes:
    """The vectors as `.npy` bytes (the embedder name is kept by the caller's manifest)."""
    buffer = io.BytesIO()
    np.save(buffer, index.vectors, allow_pickle=False)
    return buffer.getvalue()


def dense_from_bytes(data: bytes, embedder: str) -> DenseIndex:
    """The index `dense_to_bytes` wrote."""
    return DenseIndex(embedder=embedder, vectors=np.load(io.BytesIO(data), allow_pickle=False))
