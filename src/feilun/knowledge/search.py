"""A searchable set of chunks in memory: BM25, dense and hybrid search with filters.

`ChunkIndex` is what one knowledge base version loads into, and what `kb eval --beir` builds
without touching the workspace. Each chunk is indexed with its context (document title and
heading path before its text), so a chunk of 第十二条 under 第二章 matches those words too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pydantic

from feilun.core.errors import ConfigError
from feilun.core.protocols import Embedder, Hit
from feilun.core.records import Chunk
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.chunking import chunk_language
from feilun.knowledge.dense import DenseIndex, check_embedder, embed_query, embed_texts
from feilun.knowledge.embedders import covers_language
from feilun.knowledge.fusion import DEFAULT_RRF_K, Reranker, fuse_rrf, top_k
from feilun.knowledge.lexical import ChunkTerms, LexicalIndex, build_chunk_terms, build_lexical

logger = logging.getLogger(__name__)

Mode = Literal["bm25", "dense", "hybrid"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
# Fields a filter can name besides the chunk's meta keys (lang, document, title, …).
FILTER_FIELDS = ("document_id", "page")


class SearchSettings(pydantic.BaseModel):
    """How hybrid search fuses its two rankings."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    bm25_weight: float = pydantic.Field(1.0, ge=0.0, description="RRF weight of the BM25 ranking.")
    dense_weight: float = pydantic.Field(
        1.0, ge=0.0, description="RRF weight of the dense ranking."
    )
    rrf_k: int = pydantic.Field(DEFAULT_RRF_K, ge=1, description="RRF constant: 1/(rrf_k + rank).")
    candidates: int = pydantic.Field(
        100, ge=1, description="Chunks each ranking contributes to the fusion (and the reranker)."
    )


class ChunkHit(Hit):
    """One retrieved chunk: what a citation needs, and its score in the mode asked for."""

    document_id: str = ""
    document: str = pydantic.Field("", description="The document's name (its key in the KB).")
    source_id: str = pydantic.Field("", description="The id the source gave it (e.g. a `_id`).")
    title: str = ""
    page: int | None = None
    heading_path: list[str] = pydantic.Field(default_factory=list)
    start_char: int = 0
    end_char: int = 0
    lang: str = ""


@dataclass
class ChunkIndex:
    """Chunks (as JSON rows) with their lexical index and, optionally, their vectors."""

    rows: list[dict[str, Any]]  # Chunk.model_dump(mode="json") of each chunk, in index order
    analyzer: Analyzer
    lexical: LexicalIndex
    dense: DenseIndex | None = None
    # The terms of each chunk's own text; None for a KB stored before they were (analysed
    # on first use instead, then remembered).
    chunk_terms: ChunkTerms | None = None
    _names: list[str] | None = field(default=None, init=False, repr=False)
    _analysed: dict[int, frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _positions: dict[str, int] | None = field(default=None, init=False, repr=False)

    @property
    def size(self) -> int:
        """Number of chunks."""
        return len(self.rows)

    def position(self, chunk_id: str) -> int:
        """Where the chunk with id `chunk_id` is in the index."""
        if self._positions is None:
            self._positions = {row["id"]: n for n, row in enumerate(self.rows)}
        return self._positions[chunk_id]

    def terms(self, position: int) -> frozenset[str]:
        """The distinct index terms of the text of the chunk at `position` (not its headings)."""
        if self.chunk_terms is None:
            found = self._analysed.get(position)
            if found is None:
                found = self._analysed[position] = frozenset(
                    self.analyzer.analyze(self.rows[position]["text"])
                )
            return found
        if self._names is None:
            names = [""] * len(self.lexical.vocabulary)
            for term, number in self.lexical.vocabulary.items():
                names[number] = term
            self._names = names
        return frozenset(map(self._names.__getitem__, self.chunk_terms.of(position).tolist()))

    def hit(self, position: int, score: float) -> ChunkHit:
        """The ChunkHit of the chunk at `position`."""
        row = self.rows[position]
        meta = row.get("meta", {})
        return ChunkHit(
            chunk_id=row["id"],
            score=float(score),
            text=row["text"],
            document_id=row["document_id"],
            document=meta.get("document", ""),
            source_id=meta.get("source_id", ""),
            title=meta.get("title", ""),
            page=row.get("page"),
            heading_path=row.get("heading_path", []),
            start_char=row["start_char"],
            end_char=row["end_char"],
            lang=meta.get("lang", ""),
        )


def context_text(row: Mapping[str, Any]) -> str:
    """What is indexed for a chunk: title and heading path (each once), then its text."""
    return "\n".join([*_header(row), row["text"]])


def _header(row: Mapping[str, Any]) -> list[str]:
    meta = row.get("meta", {})
    return [h for h in dict.fromkeys([meta.get("title", ""), *row.get("heading_path", [])]) if h]


def own_terms(
    rows: Sequence[Mapping[str, Any]], analyzed: Sequence[list[str]], analyzer: Analyzer
) -> list[list[str]]:
    """The terms of each chunk's text, cut from the analysis of its context text.

    No word or CJK run spans the line break between header and text, so a context's terms
    are its header's terms followed by its text's; headers repeat, and are analysed once each.
    """
    header_terms: dict[str, int] = {}
    own = []
    for row, terms in zip(rows, analyzed, strict=True):
        header = "\n".join(_header(row))
        if header not in header_terms:
            header_terms[header] = len(analyzer.analyze(header)) if header else 0
        own.append(terms[header_terms[header] :])
    return own


def build_chunk_index(
    chunks: Sequence[Chunk] | Sequence[dict[str, Any]],
    analyzer: Analyzer,
    embedder: Embedder | None = None,
    *,
    vectors: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ChunkIndex:
    """Index chunks; `vectors` (N, D) may hold known rows (NaN rows are embedded now)."""
    rows = [c.model_dump(mode="json") if isinstance(c, Chunk) else dict(c) for c in chunks]
    texts = [context_text(row) for row in rows]
    analyzed = analyzer.analyze_many(texts)
    lexical = build_lexical(analyzed)
    terms = build_chunk_terms(own_terms(rows, analyzed, analyzer), lexical.vocabulary)
    dense = None
    if embedder is not None:
        dense = DenseIndex(embedder.name, _fill_vectors(embedder, texts, vectors, progress))
    return ChunkIndex(rows=rows, analyzer=analyzer, lexical=lexical, dense=dense, chunk_terms=terms)


def _fill_vectors(
    embedder: Embedder,
    texts: list[str],
    known: np.ndarray | None,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    if known is None or known.shape != (len(texts), embedder.dimension):
        return embed_texts(embedder, texts, progress)
    missing = np.flatnonzero(np.isnan(known).any(axis=1))
    vectors = known.astype(np.float32, copy=True)
    if missing.size:
        vectors[missing] = embed_texts(embedder, [texts[i] for i in missing], progress)
    return vectors


def search(
    index: ChunkIndex,
    query: str,
    k: int,
    mode: Mode = "hybrid",
    *,
    filters: Mapping[str, str] | None = None,
    embedder: Embedder | None = None,
    settings: SearchSettings | None = None,
    reranker: Reranker | None = None,
) -> list[ChunkHit]:
    """The `k` best chunks for `query`, best first (dense and hybrid need the embedder)."""
    settings = settings or SearchSettings()
    depth = max(k, settings.candidates) if reranker is not None else k
    positions, scores = rank_chunks(
        index, query, depth, mode, filters=filters, embedder=embedder, settings=settings
    )
    hits = [index.hit(p, s) for p, s in zip(positions.tolist(), scores.tolist(), strict=True)]
    if reranker is not None:
        hits = reranker.rerank(query, hits)
    return hits[:k]


def rank_chunks(
    index: ChunkIndex,
    query: str,
    k: int,
    mode: Mode = "hybrid",
    *,
    filters: Mapping[str, str] | None = None,
    embedder: Embedder | None = None,
    query_vector: np.ndarray | None = None,
    settings: SearchSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(chunk positions, scores) of the `k` best chunks, best first."""
    if mode not in MODES:
        raise ConfigError(f"unknown search mode {mode!r}", f"use one of {', '.join(MODES)}")
    settings = settings or SearchSettings()
    if mode == "hybrid" and not _is_dense_useful(index, query):
        mode = "bm25"
    mask = filter_mask(index, filters) if filters else None
    depth = max(k, settings.candidates) if mode == "hybrid" else k
    rankings: dict[str, np.ndarray] = {}
    if mode in ("bm25", "hybrid"):
        scores = index.lexical.score(index.analyzer.analyze(query))
        rankings["bm25"] = best = top_k(scores, depth, mask, is_positive_only=True)
        if mode == "bm25":
            return best, scores[best]
    vector = _query_vector(index, query, embedder, query_vector)
    assert index.dense is not None  # _query_vector refuses an index without vectors
    rankings["dense"], similarities = index.dense.top(vector, depth, mask)
    if mode == "dense":
        return rankings["dense"], similarities
    weights = {"bm25": settings.bm25_weight, "dense": settings.dense_weight}
    positions, fused = fuse_rrf(rankings, weights, settings.rrf_k)
    return positions[:k], fused[:k]


def _is_dense_useful(index: ChunkIndex, query: str) -> bool:
    """False when the KB has no vectors, or its embedder was not trained on the query's language.

    A BM25-only KB (built with `--embedder none`) answers hybrid search with BM25 alone (the
    callers that face people say so: `retrieval.effective_mode`). The packaged
    all-MiniLM-L6-v2 is English-only: fused into a Chinese query's ranking its near-random
    order pushes the right article out of the top 5 (industry QA: BM25 finds the evidence for
    98% of Chinese questions, equal-weight hybrid for 31%). Such a query is answered by BM25
    alone; English queries keep the fusion.
    """
    if index.dense is None:
        return False
    language = chunk_language(query, fallback="other")
    if covers_language(index.dense.embedder, language):
        return True
    logger.debug("%s does not cover %s: hybrid falls back to BM25", index.dense.embedder, language)
    return False


def _query_vector(
    index: ChunkIndex, query: str, embedder: Embedder | None, vector: np.ndarray | None
) -> np.ndarray:
    if index.dense is None:
        raise ConfigError(
            "this knowledge base has no dense index (it was built without an embedder)",
            "use --mode bm25, or rebuild it with an embedder",
        )
    if vector is not None:
        return vector
    if embedder is None:
        raise ConfigError(
            f"dense search needs the embedder {index.dense.embedder!r}",
            "pass the embedder the index was built with",
        )
    check_embedder(index.dense.embedder, embedder, "this knowledge base")
    return embed_query(embedder, query)


def filter_mask(index: ChunkIndex, filters: Mapping[str, str]) -> np.ndarray:
    """Chunks whose fields equal every filter's value (as text), as a boolean mask (N,)."""
    known = sorted({key for row in index.rows for key in row.get("meta", {})} | set(FILTER_FIELDS))
    mask = np.ones(index.size, dtype=bool)
    for key, value in filters.items():
        if key not in known:
            raise ConfigError(
                f"unknown filter field {key!r}; chunks have: {', '.join(known)}",
                "filter on one of those, e.g. --filter lang=zh",
            )
        mask &= np.fromiter(
            (str(_field(row, key)) == value for row in index.rows), dtype=bool, count=index.size
        )
    return mask


def _field(row: Mapping[str, Any], key: str) -> Any:
    return row[key] if key in FILTER_FIELDS else row.get("meta", {}).get(key, "")
