"""The retrieval API the gateway will call: validation, capping, embedder checks."""

from __future__ import annotations

import logging

import pytest

from feilun.core.errors import BadInput, ConfigError
from feilun.core.protocols import Retriever
from feilun.knowledge.bases import create_kb
from feilun.knowledge.library import Library
from feilun.knowledge.retrieval import MAX_K, KbRetriever, cap_k, effective_mode, retrieve

from .conftest import FakeEmbedder


@pytest.fixture
def laws(library: Library) -> Library:
    create_kb(library, "laws", "laws", embedder="fake-bow")
    return library


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_is_bad_input(laws: Library, query: str) -> None:
    with pytest.raises(BadInput, match="the query is empty"):
        retrieve(laws, "laws", query)


def test_k_is_capped_with_a_warning(laws: Library, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        hits = retrieve(laws, "laws", "燃气 safety", k=MAX_K + 50, mode="bm25")
    assert len(hits) == MAX_K and f"k={MAX_K + 50} is more than {MAX_K}" in caplog.text
    assert cap_k(3) == (3, None)
    with pytest.raises(ConfigError, match="k=0 must be at least 1"):
        retrieve(laws, "laws", "燃气", k=0)


def test_hits_carry_what_a_citation_needs(laws: Library) -> None:
    hit = retrieve(laws, "laws", "燃气经营者停业歇业需要提前多少个工作日报告", k=1)[0]
    assert hit.chunk_id.startswith("chk_") and hit.document_id.startswith("doc_")
    assert hit.title == "城镇燃气管理条例" and hit.heading_path[-1].startswith("第")
    assert "90个工作日" in hit.text and hit.score > 0


def test_embedder_mismatch_is_refused_naming_both(laws: Library) -> None:
    with pytest.raises(ConfigError, match="'fake-bow'.*'minilm-x'"):
        retrieve(laws, "laws", "燃气", embedder=FakeEmbedder(name="minilm-x"))
    assert retrieve(laws, "laws", "燃气", mode="bm25", embedder=FakeEmbedder(name="minilm-x"))
    with pytest.raises(ConfigError, match="unknown retrieval mode 'sparse'"):
        retrieve(laws, "laws", "燃气", mode="sparse")


def test_kb_retriever_is_a_retriever(laws: Library) -> None:
    retriever = KbRetriever(laws, "laws", mode="bm25", filters={"lang": "en"})
    assert isinstance(retriever, Retriever)
    hits = retriever.retrieve("occupational safety standards", 2)
    assert len(hits) == 2 and all(h.lang == "en" for h in hits)


def test_hybrid_on_a_bm25_only_kb_falls_back_with_a_warning(
    library: Library, caplog: pytest.LogCaptureFixture
) -> None:
    create_kb(library, "plain", "laws", embedder="none")
    question = "燃气经营者停业歇业需要提前多少个工作日报告"
    with caplog.at_level(logging.WARNING):
        hybrid = retrieve(library, "plain", question, k=3)  # hybrid is the default
        again = retrieve(library, "plain", question, k=3, mode="hybrid")
    assert hybrid == again == retrieve(library, "plain", question, k=3, mode="bm25")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per version, not per query
    assert "plain@1 has no dense index" in warnings[0] and "BM25 alone" in warnings[0]
    loaded = library.load("plain")
    assert effective_mode(loaded, "bm25") == ("bm25", None)
    assert effective_mode(loaded, "hybrid")[0] == "bm25"
    with pytest.raises(ConfigError, match="no dense index.*use --mode bm25"):
        retrieve(library, "plain", question, mode="dense")
