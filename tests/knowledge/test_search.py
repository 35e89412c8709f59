"""Search over an in-memory ChunkIndex: modes, RRF, filters, the reranker hook, embedders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from feilun.core.errors import ConfigError
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.bases import index_documents
from feilun.knowledge.chunking import ChunkSettings
from feilun.knowledge.fusion import fuse_rrf, top_k
from feilun.knowledge.search import ChunkHit, ChunkIndex, rank_chunks, search

from .conftest import GAS, OSHA, SMOKING, FakeEmbedder, document


@pytest.fixture(scope="module")
def index() -> ChunkIndex:
    docs = [document(GAS), document(OSHA), document(SMOKING)]
    built, entries, skipped = index_documents(docs, ChunkSettings(), Analyzer(), FakeEmbedder())
    assert len(entries) == 3 and not skipped
    return built


def test_top_k_orders_masks_and_breaks_ties_by_position() -> None:
    scores = np.array([0.5, 2.0, 0.0, 2.0, 1.0])
    assert top_k(scores, 3).tolist() == [1, 3, 4]
    assert top_k(scores, 10, is_positive_only=True).tolist() == [1, 3, 4, 0]
    mask = np.array([True, False, True, True, True])
    assert top_k(scores, 10, mask).tolist() == [3, 4, 0, 2]
    assert top_k(scores, 0).tolist() == []


def test_rrf_adds_weighted_reciprocal_ranks() -> None:
    positions, scores = fuse_rrf(
        {"bm25": np.array([7, 3]), "dense": np.array([3, 9])}, {"bm25": 1.0, "dense": 0.5}, 60
    )
    assert positions.tolist() == [3, 7, 9]
    assert scores.tolist() == pytest.approx([1 / 62 + 0.5 / 61, 1 / 61, 0.5 / 62])


def test_each_mode_finds_the_gas_article(index: ChunkIndex) -> None:
    embedder = FakeEmbedder()
    question = "管道燃气经营者临时暂停供气，要提前多少小时通知燃气用户？"
    for mode in ("bm25", "dense", "hybrid"):
        hits = search(index, question, 5, mode, embedder=embedder)  # type: ignore[arg-type]
        assert [h.heading_path[-1] for h in hits][:3].count("第二十条") == 1, mode
        assert len(hits) == 5 and hits[0].document == "laws/城镇燃气管理条例(2016-02-06).md"
    top = search(index, question, 1, "bm25")[0]
    assert top.title == "城镇燃气管理条例" and top.lang == "zh" and top.page is None
    assert GAS.read_text(encoding="utf-8")[top.start_char : top.end_char] == top.text


def test_filters(index: ChunkIndex) -> None:
    hits = search(index, "employer safety 燃气", 20, "bm25", filters={"lang": "en"})
    assert hits and all(h.lang == "en" for h in hits)
    one = index.rows[0]["document_id"]
    assert {
        h.document_id for h in search(index, "燃气", 5, "bm25", filters={"document_id": one})
    } == {one}
    assert search(index, "燃气", 5, "bm25", filters={"lang": "fr"}) == []
    with pytest.raises(ConfigError, match="unknown filter field 'colour'; chunks have: .*lang"):
        search(index, "燃气", 5, "bm25", filters={"colour": "red"})


def test_another_embedder_is_refused_naming_both(index: ChunkIndex) -> None:
    with pytest.raises(
        ConfigError, match="built with embedder 'fake-bow'.*query embedder is 'other'"
    ):
        search(index, "燃气", 5, "dense", embedder=FakeEmbedder(name="other"))
    with pytest.raises(ConfigError, match="dense search needs the embedder 'fake-bow'"):
        search(index, "燃气", 5, "hybrid")
    with pytest.raises(ConfigError, match="unknown search mode"):
        rank_chunks(index, "燃气", 5, "fuzzy")  # type: ignore[arg-type]


def test_reranker_hook_reorders_the_candidates(index: ChunkIndex) -> None:
    seen: list[int] = []

    class Reverse:
        def rerank(self, query: str, hits: Sequence[ChunkHit]) -> list[ChunkHit]:
            seen.append(len(hits))
            return list(reversed(hits))

    plain = search(index, "燃气用户", 100, "bm25")
    reranked = search(index, "燃气用户", 3, "bm25", reranker=Reverse())
    assert (
        seen == [len(plain)]
        and [h.chunk_id for h in reranked] == [h.chunk_id for h in reversed(plain)][:3]
    )


def test_bm25_only_index_answers_hybrid_with_bm25_and_refuses_dense() -> None:
    built, _, _ = index_documents([document(SMOKING)], ChunkSettings(), Analyzer())
    bm25 = search(built, "吸烟", 3, "bm25")
    assert len(bm25) == 3
    assert search(built, "吸烟", 3, "hybrid") == bm25  # BM25 scores, not RRF ones
    with pytest.raises(ConfigError, match="no dense index"):
        search(built, "吸烟", 2, "dense", embedder=FakeEmbedder())


def test_hybrid_uses_bm25_alone_where_the_embedder_has_no_language() -> None:
    english_only = FakeEmbedder(name="all-minilm-l6-v2")  # the packaged embedder's languages
    docs = [document(GAS), document(OSHA)]
    built, _, _ = index_documents(docs, ChunkSettings(), Analyzer(), english_only)
    chinese = "燃气经营者停业需要提前多少个工作日报告"
    hybrid = search(built, chinese, 5, "hybrid", embedder=english_only)
    assert [h.chunk_id for h in hybrid] == [h.chunk_id for h in search(built, chinese, 5, "bm25")]
    english = "employer inspection penalties"
    fused = search(built, english, 5, "hybrid", embedder=english_only)
    assert fused[0].score < 1 / 30  # an RRF score, not a BM25 one
