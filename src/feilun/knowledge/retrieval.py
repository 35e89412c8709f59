"""The retrieval API other stages and the gateway call: `retrieve(library, kb, query, …)`.

    library = Library(workspace.catalog, workspace.artifacts)   # one per process
    hits = retrieve(library, "handbook", "停气要提前多久通知？", k=5, mode="hybrid")
    hits[0].chunk_id, hits[0].document, hits[0].title, hits[0].page, hits[0].heading_path

Each call reads the KB's latest version (or `name@3`); a version being written meanwhile is
seen only once it is complete. `KbRetriever` is the same behind the `Retriever` Protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from feilun.core.errors import BadInput, ConfigError
from feilun.core.protocols import Embedder
from feilun.knowledge.dense import check_embedder
from feilun.knowledge.fusion import Reranker
from feilun.knowledge.library import Library, LoadedKb
from feilun.knowledge.search import MODES, ChunkHit, Mode, SearchSettings, search

logger = logging.getLogger(__name__)

MAX_K = 100  # more hits than this are capped, with a warning
MAX_QUERY_CHARS = 4000


def cap_k(k: int) -> tuple[int, str | None]:
    """`k` within 1..MAX_K, and the warning to show when it was capped."""
    if k < 1:
        raise ConfigError(f"k={k} must be at least 1", "ask for 1 or more hits, e.g. -k 5")
    if k > MAX_K:
        return MAX_K, f"k={k} is more than {MAX_K}; returning the best {MAX_K}"
    return k, None


def check_query(query: str) -> str:
    """The query without surrounding whitespace; BadInput when nothing is left or it is huge."""
    stripped = query.strip() if isinstance(query, str) else ""
    if not stripped:
        raise BadInput("the query is empty", 'ask a question, e.g. `feilun kb query KB "…"`')
    if len(stripped) > MAX_QUERY_CHARS:
        raise BadInput(
            f"the query is {len(stripped)} characters, more than {MAX_QUERY_CHARS}",
            "shorten it to the question itself",
        )
    return stripped


def check_mode(mode: str) -> Mode:
    """`mode` if it is bm25, dense or hybrid."""
    if mode not in MODES:
        raise ConfigError(f"unknown retrieval mode {mode!r}", f"use one of {', '.join(MODES)}")
    return mode


def effective_mode(loaded: LoadedKb, mode: str) -> tuple[Mode, str | None]:
    """The mode KB version `loaded` can search in, and the warning to show when it differs.

    Hybrid search of a BM25-only KB (built with `--embedder none`) is BM25 search; dense
    search of one stays an error (`search` names the fix), since no ranking is left.
    """
    checked = check_mode(mode)
    if checked != "hybrid" or loaded.manifest.embedder:
        return checked, None
    return "bm25", (
        f"knowledge base {loaded.record.ref} has no dense index (built with --embedder none): "
        "hybrid search uses BM25 alone; pass --mode bm25 to silence this, or rebuild it with "
        "an embedder for hybrid search"
    )


def retrieve(
    library: Library,
    kb: str | LoadedKb,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    filters: Mapping[str, str] | None = None,
    *,
    embedder: Embedder | None = None,
    settings: SearchSettings | None = None,
    reranker: Reranker | None = None,
) -> list[ChunkHit]:
    """The `k` chunks of KB `kb` that best answer `query`.

    `kb` is `name`, `name@version`, or a version `library.load` returned. `filters` keep
    chunks whose field equals the value (`{"lang": "zh"}`); `embedder` defaults to the one
    the KB was built with, and another one is refused, naming both. Hybrid search of a KB
    without vectors is BM25 search (logged as a warning, once per version), and so is hybrid
    search of a query in a language the embedder does not cover.
    """
    query = check_query(query)
    k, warning = cap_k(k)
    if warning:
        logger.warning("%s", warning)
    loaded = kb if isinstance(kb, LoadedKb) else library.load(kb)
    checked, fallback = effective_mode(loaded, mode)
    if fallback:
        library.warn_once(fallback)
    kb_embedder = loaded.manifest.embedder
    if checked != "bm25" and kb_embedder:
        if embedder is None:
            embedder = library.embedder(kb_embedder)
        check_embedder(kb_embedder, embedder, f"knowledge base {loaded.record.ref}")
    return search(
        loaded.index,
        query,
        k,
        checked,
        filters=filters,
        embedder=embedder,
        settings=settings,
        reranker=reranker,
    )


class KbRetriever:
    """One KB, mode and filter set behind the `Retriever` Protocol."""

    def __init__(
        self,
        library: Library,
        kb: str,
        mode: str = "hybrid",
        filters: Mapping[str, str] | None = None,
    ) -> None:
        self.library = library
        self.kb = kb
        self.mode = check_mode(mode)
        self.filters = dict(filters or {})

    def retrieve(self, query: str, k: int) -> list[ChunkHit]:
        """The best `k` hits, best first."""
        return retrieve(self.library, self.kb, query, k, self.mode, self.filters)
