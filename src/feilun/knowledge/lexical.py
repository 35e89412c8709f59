"""BM25 over analyzed chunks: Lucene's formula, precomputed weights, vectorised with numpy.

The index stores, per term, the chunks that hold it and each one's final BM25 weight
`idf · tf / (tf + k1·(1 − b + b·len/avglen))` with `idf = ln(1 + (N − df + 0.5)/(df + 0.5))`
— bm25s's "lucene" method, so scores equal bm25s's on the same tokens. A query's score is
one weighted bincount over its terms' postings.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

DEFAULT_K1 = 1.5
DEFAULT_B = 0.75


@dataclass(frozen=True)
class LexicalIndex:
    """Postings with precomputed BM25 weights (term-major, like a CSC matrix)."""

    vocabulary: dict[str, int]
    indptr: np.ndarray  # (V + 1,) int64: postings of term t are [indptr[t], indptr[t+1])
    indices: np.ndarray  # (P,) int32: chunk number of each posting
    weights: np.ndarray  # (P,) float32: BM25 weight of each posting
    lengths: np.ndarray  # (N,) int32: terms per chunk
    k1: float = DEFAULT_K1
    b: float = DEFAULT_B

    @property
    def size(self) -> int:
        """Number of indexed chunks."""
        return int(self.lengths.shape[0])

    def score(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for a query's terms (a repeated term counts again)."""
        ids = [self.vocabulary[t] for t in terms if t in self.vocabulary]
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        spans = [(self.indptr[i], self.indptr[i + 1]) for i in ids]
        postings = np.concatenate([self.indices[s:e] for s, e in spans])
        weights = np.concatenate([self.weights[s:e] for s, e in spans])
        return np.bincount(postings, weights=weights, minlength=self.size).astype(np.float32)


def build_lexical(
    analyzed: Sequence[Sequence[str]], *, k1: float = DEFAULT_K1, b: float = DEFAULT_B
) -> LexicalIndex:
    """The BM25 index of analyzed chunks (one list of terms per chunk, in chunk order)."""
    # dict.fromkeys and map over chain run at C speed: no Python loop per term.
    vocabulary = {term: i for i, term in enumerate(dict.fromkeys(chain.from_iterable(analyzed)))}
    lengths = np.fromiter(map(len, analyzed), dtype=np.int64, count=len(analyzed))
    term_ids = np.fromiter(
        map(vocabulary.__getitem__, chain.from_iterable(analyzed)),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    n_chunks, n_terms = len(analyzed), len(vocabulary)
    chunk_ids = np.repeat(np.arange(n_chunks, dtype=np.int64), lengths)
    # Sorting (term, chunk) pairs once gives term frequencies and term-major postings.
    pairs, tf = np.unique(term_ids * max(n_chunks, 1) + chunk_ids, return_counts=True)
    terms, chunks = np.divmod(pairs, max(n_chunks, 1))
    df = np.bincount(terms, minlength=n_terms)
    idf = np.log1p((n_chunks - df + 0.5) / (df + 0.5))
    average = lengths.mean() if n_chunks and lengths.sum() else 1.0
    norm = k1 * (1.0 - b + b * lengths[chunks] / average)
    weights = idf[terms] * tf / (tf + norm)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    return LexicalIndex(
        vocabulary=vocabulary,
        indptr=indptr,
        indices=chunks.astype(np.int32),
        weights=weights.astype(np.float32),
        lengths=lengths.astype(np.int32),
        k1=k1,
        b=b,
    )


def lexical_to_bytes(index: LexicalIndex) -> bytes:
    """The index as one `.npz` file's bytes (the vocabulary as JSON inside it)."""
    terms = sorted(index.vocabulary, key=index.vocabulary.__getitem__)
    header = {"k1": index.k1, "b": index.b, "terms": terms}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        header=np.frombuffer(json.dumps(header, ensure_ascii=False).encode(), dtype=np.uint8),
        indptr=index.indptr,
        indices=index.indices,
        weights=index.weights,
        lengths=index.lengths,
    )
    return buffer.getvalue()


def lexical_from_bytes(data: bytes) -> LexicalIndex:
    """The index `lexical_to_bytes` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        header = json.loads(arrays["header"].tobytes().decode())
        return LexicalIndex(
            vocabulary={term: i for i, term in enumerate(header["terms"])},
            indptr=arrays["indptr"],
            indices=arrays["indices"],
            weights=arrays["weights"],
            lengths=arrays["lengths"],
            k1=float(header["k1"]),
            b=float(header["b"]),
        )


@dataclass(frozen=True)
class ChunkTerms:
    """The distinct terms of each chunk's own text, as ids into a vocabulary (chunk-major CSR).

    What RAG's relevance and grounding checks read for a retrieved chunk, stored at build time
    so that a question analyses only the question.
    """

    indptr: np.ndarray  # (N + 1,) int64: the terms of chunk c are ids[indptr[c]:indptr[c+1]]
    ids: np.ndarray  # (M,) int32: term ids, each once per chunk, in order of first use

    @property
    def size(self) -> int:
        """Number of chunks."""
        return int(self.indptr.shape[0]) - 1

    def of(self, chunk: int) -> np.ndarray:
        """The term ids of chunk number `chunk`."""
        return self.ids[self.indptr[chunk] : self.indptr[chunk + 1]]


def build_chunk_terms(analyzed: Sequence[Sequence[str]], vocabulary: dict[str, int]) -> ChunkTerms:
    """The distinct terms of each analyzed text (every term must be in `vocabulary`)."""
    distinct = [dict.fromkeys(terms) for terms in analyzed]  # C speed, unlike a sort of pairs
    lengths = np.fromiter(map(len, distinct), dtype=np.int64, count=len(distinct))
    ids = np.fromiter(
        map(vocabulary.__getitem__, chain.from_iterable(distinct)),
        dtype=np.int32,
        count=int(lengths.sum()),
    )
    indptr = np.zeros(len(distinct) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return ChunkTerms(indptr=indptr, ids=ids)


def chunk_terms_to_bytes(terms: ChunkTerms) -> bytes:
    """The chunk terms as one `.npz` file's bytes (ids of the KB's BM25 vocabulary)."""
    buffer = io.BytesIO()
    np.savez(buffer, indptr=terms.indptr, ids=terms.ids)
    return buffer.getvalue()


def chunk_terms_from_bytes(data: bytes) -> ChunkTerms:
    """The chunk terms `chunk_terms_to_bytes` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return ChunkTerms(indptr=arrays["indptr"], ids=arrays["ids"])
