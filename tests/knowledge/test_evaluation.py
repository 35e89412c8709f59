"""Metrics by hand, BEIR folders, and quality against references on the shared data sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer

from feilun.core.errors import BadInput
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.bases import index_documents
from feilun.knowledge.chunking import ChunkSettings
from feilun.knowledge.evaluation import (
    evaluate,
    evaluate_beir,
    read_beir,
    read_qrels,
    score_ranking,
)
from feilun.knowledge.lexical import build_lexical

SCIFACT = Path("../shared/data/scifact")
CMRC = Path("../shared/data/cmrc2018-retrieval")


def test_metrics_by_hand() -> None:
    metrics = score_ranking(["x", "a", "y", "b"], {"a": 1, "b": 2, "c": 0})
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert metrics["ndcg@10"] == pytest.approx(dcg / idcg)
    assert metrics["mrr@10"] == 0.5 and metrics["recall@10"] == 1.0
    assert score_ranking([], {"a": 1})["ndcg@10"] == 0.0


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    lines = [json.dumps(row, ensure_ascii=False) for row in corpus]
    (folder / "corpus.jsonl").write_text("\n".join(lines), encoding="utf-8")
    lines = [json.dumps(row, ensure_ascii=False) for row in queries]
    (folder / "queries.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return folder


def test_beir_folder_keeps_ids_and_scores_long_documents_by_best_chunk(tmp_path: Path) -> None:
    long_text = " ".join(["Filler sentence about nothing in particular."] * 200)
    corpus = [
        {"_id": "long", "title": "", "text": long_text + " The boiler pressure valve failed."},
        {"_id": "short", "title": "Valves", "text": "Valves need yearly checks."},
        {"_id": "empty", "title": "", "text": ""},
    ]
    queries = [{"_id": "q1", "text": "boiler pressure valve"}, {"_id": "q2", "text": "x"}]
    folder = write_beir(
        tmp_path / "tiny", corpus, queries, "query-id\tcorpus-id\tscore\nq1\tlong\t1\n"
    )
    result = evaluate_beir(folder, "test", "bm25", chunking=ChunkSettings(chunk_tokens=64))
    assert result.metrics["ndcg@10"] == 1.0 and result.queries == 1
    assert result.chunks > 10 and result.skipped_documents == 1
    assert set(result.to_json()) >= {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
    with pytest.raises(BadInput, match="no qrels for split 'dev'; splits: test"):
        read_beir(folder, "dev")
    with pytest.raises(BadInput, match="has no corpus.jsonl or corpus.jsonl.gz"):
        read_beir(tmp_path, "test")
    (tmp_path / "bad.tsv").write_text("q1 only-one-column\n", encoding="utf-8")
    with pytest.raises(BadInput, match="line 1 is not `query-id<TAB>corpus-id<TAB>score`"):
        read_qrels(tmp_path / "bad.tsv")


def test_chinese_needs_jieba_on_cmrc() -> None:
    documents, queries, qrels = read_beir(CMRC, "test")
    documents = documents[:60]
    kept = {d.name for d in documents}
    qrels = {q: r for q, r in qrels.items() if set(r) <= kept}
    index, _, _ = index_documents(documents, ChunkSettings(), Analyzer())
    jieba = evaluate(index, queries, qrels, "bm25").metrics["ndcg@10"]
    # The same BM25 over whitespace tokens: a Chinese paragraph is then one or two "words".
    whitespace = build_lexical([f"{d.title} {d.text}".split() for d in documents])
    total = 0.0
    for qid, relevant in qrels.items():
        scores = whitespace.score(queries[qid].split())
        ranking = [documents[i].name for i in np.argsort(-scores, kind="stable")[:10]]
        total += score_ranking(ranking, relevant)["ndcg@10"]
    assert jieba > 0.95 and total / len(qrels) < 0.3


def bm25s_ndcg(folder: Path, split: str) -> float:
    documents, queries, qrels = read_beir(folder, split)
    stemmer = Stemmer.Stemmer("english")
    texts = [f"{d.title} {d.text}" for d in documents]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False))
    judged = [q for q in qrels if q in queries]
    tokens = bm25s.tokenize([queries[q] for q in judged], stopwords="en", stemmer=stemmer)
    found, _ = retriever.retrieve(tokens, k=100, show_progress=False)
    rankings = [[documents[i].name for i in row] for row in found]
    return float(
        np.mean(
            [score_ranking(r, qrels[q])["ndcg@10"] for r, q in zip(rankings, judged, strict=True)]
        )
    )


@pytest.mark.slow
def test_scifact_bm25_matches_bm25s() -> None:
    ours = evaluate_beir(SCIFACT, "train", "bm25").metrics["ndcg@10"]
    assert ours == pytest.approx(bm25s_ndcg(SCIFACT, "train"), abs=0.005)


@pytest.mark.slow
@pytest.mark.integration
def test_scifact_hybrid_beats_each_mode() -> None:
    from feilun.knowledge.embedders import DEFAULT_EMBEDDER, open_embedder

    embedder = open_embedder(DEFAULT_EMBEDDER)
    documents, queries, qrels = read_beir(SCIFACT, "train")
    index, _, _ = index_documents(documents, ChunkSettings(), Analyzer(), embedder)
    ndcg = {
        mode: evaluate(index, queries, qrels, mode, embedder=embedder).metrics["ndcg@10"]
        for mode in ("bm25", "dense", "hybrid")
    }
    assert ndcg["hybrid"] > max(ndcg["bm25"], ndcg["dense"]), ndcg
    assert ndcg["dense"] > 0.7, ndcg
