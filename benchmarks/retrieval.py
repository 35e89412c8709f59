"""Retrieval quality and speed: feilun's BM25 vs bm25s and rank_bm25, dense vs plain numpy.

    .venv/bin/python benchmarks/retrieval.py               # table on stdout, JSON in results/
    .venv/bin/python benchmarks/retrieval.py --skip-dense  # BM25 only (no embedder, ~1 minute)

Quality: nDCG@10 of bm25, dense and hybrid on SciFact (BEIR layout; a document is scored by
its best chunk) and of bm25 on CMRC 2018 retrieval, next to the reference BM25 of bm25s
(its own tokenizer: Lucene stopwords, Snowball stemmer) and rank_bm25 (BM25Okapi) on the same
data. Speed: the same corpus indexed by each BM25 (tokenising included) and its queries
answered one at a time (top 10), least CPU time of `--rounds` interleaved rounds; dense search
of the same vectors by feilun and by a bare numpy matrix product + argpartition, alternating
query by query.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.bases import index_documents
from feilun.knowledge.chunking import ChunkSettings
from feilun.knowledge.evaluation import evaluate, read_beir, score_ranking
from feilun.knowledge.fusion import top_k
from feilun.knowledge.lexical import build_lexical

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def best_of(rounds: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Least CPU time of `rounds` runs, and the last result.

    CPU time, not wall time: the code measured is single-threaded, and on a shared 2-core
    machine wall time mostly measures the neighbours.
    """
    times, result = [], None
    for _ in range(rounds):
        started = time.process_time()
        result = run()
        times.append(time.process_time() - started)
    return min(times), result


# -- the three BM25s ----------------------------------------------------------------------


def feilun_index(texts: list[str]) -> tuple[Analyzer, Any]:
    analyzer = Analyzer()
    return analyzer, build_lexical(analyzer.analyze_many(texts))


def feilun_query(built: tuple[Analyzer, Any], query: str) -> list[int]:
    analyzer, lexical = built
    return top_k(lexical.score(analyzer.analyze(query)), 10, is_positive_only=True).tolist()


def bm25s_index(texts: list[str]) -> tuple[Any, Any]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return retriever, stemmer


def bm25s_query(built: tuple[Any, Any], query: str, k: int = 10) -> list[int]:
    import bm25s

    retriever, stemmer = built
    tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
    if not tokens.vocab:
        return []
    found, _ = retriever.retrieve(
        tokens, k=min(k, retriever.scores["num_docs"]), show_progress=False
    )
    return [int(i) for i in found[0]]


def rank_bm25_index(texts: list[str]) -> tuple[Analyzer, Any]:
    from rank_bm25 import BM25Okapi

    analyzer = Analyzer()  # rank_bm25 has no tokenizer: it gets ours, timed with it
    return analyzer, BM25Okapi(analyzer.analyze_many(texts), k1=1.5, b=0.75)


def rank_bm25_query(built: tuple[Analyzer, Any], query: str, k: int = 10) -> list[int]:
    analyzer, bm25 = built
    scores = bm25.get_scores(analyzer.analyze(query))
    return np.argsort(-scores, kind="stable")[:k].tolist()


PEERS = {
    "feilun": (feilun_index, feilun_query),
    "bm25s": (bm25s_index, bm25s_query),
    "rank_bm25": (rank_bm25_index, rank_bm25_query),
}


def bm25_speed(texts: list[str], queries: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Indexing docs/s and queries/s of each BM25, rounds interleaved so load hits all alike."""
    index_s: dict[str, list[float]] = {name: [] for name in PEERS}
    query_s: dict[str, list[float]] = {name: [] for name in PEERS}
    for _ in range(rounds):
        for name, (build, ask) in PEERS.items():
            seconds, built = best_of(1, lambda build=build: build(texts))
            index_s[name].append(seconds)
            seconds, _ = best_of(1, lambda ask=ask, built=built: [ask(built, q) for q in queries])
            query_s[name].append(seconds)
    return {
        name: {
            "docs_per_s": len(texts) / min(index_s[name]),
            "queries_per_s": len(queries) / min(query_s[name]),
        }
        for name in PEERS
    }


def peer_ndcg(folder: Path, split: str, peer: str) -> float:
    """nDCG@10 of a peer BM25 over whole documents (title + text) of a BEIR folder."""
    documents, queries, qrels = read_beir(folder, split)
    build, _ = PEERS[peer]
    built = build([f"{d.title} {d.text}" for d in documents])
    ask = bm25s_query if peer == "bm25s" else rank_bm25_query
    judged = [q for q in qrels if q in queries and any(r > 0 for r in qrels[q].values())]
    total = 0.0
    for qid in judged:
        ranking = [documents[i].name for i in ask(built, queries[qid], 100)]
        total += score_ranking(ranking, qrels[qid])["ndcg@10"]
    return total / len(judged)


# -- feilun's own modes -------------------------------------------------------------------


def feilun_quality(
    folder: Path, split: str, modes: list[str], embedder: Any
) -> tuple[dict[str, dict[str, Any]], Any]:
    """Metrics of each mode on one BEIR folder, indexed once; also the built index."""
    documents, queries, qrels = read_beir(folder, split)
    started = time.perf_counter()
    index, _, _ = index_documents(documents, ChunkSettings(), Analyzer(), embedder)
    print(f"  indexed {folder.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    results = {}
    for mode in modes:
        result = evaluate(index, queries, qrels, mode, embedder=embedder)  # type: ignore[arg-type]
        results[mode] = result.to_json()
        print(f"  {folder.name} {mode}: {results[mode]['ndcg@10']}", file=sys.stderr)
    return results, index


def industry_evidence(embedder: Any, modes: list[str]) -> dict[str, float]:
    """Share of industry QA items whose evidence lies in one of the top-5 chunks, per mode.

    A chunk holds the evidence when it is from the evidence's document and covers at least
    half of the evidence's characters (the evidence is located verbatim in the document).
    """
    from feilun.core.records import Document
    from feilun.knowledge.search import search

    folder = DATA / "industry"
    manifest = [json.loads(line) for line in (folder / "docs" / "manifest.jsonl").open()]
    documents = {
        row["file"]: Document(
            name=row["file"],
            title=row["title"],
            text=(folder / "docs" / row["file"]).read_text(encoding="utf-8"),
        )
        for row in manifest
    }
    index, _, _ = index_documents(list(documents.values()), ChunkSettings(), Analyzer(), embedder)
    items = [json.loads(line) for line in (folder / "qa.jsonl").open(encoding="utf-8")]
    found = dict.fromkeys(modes, 0)
    for item in items:
        start = documents[item["doc"]].text.index(item["evidence"])
        end = start + len(item["evidence"])
        for mode in modes:
            hits = search(index, item["question"], 5, mode, embedder=embedder)  # type: ignore[arg-type]
            if any(
                h.document == item["doc"]
                and min(end, h.end_char) - max(start, h.start_char) >= (end - start) / 2
                for h in hits
            ):
                found[mode] += 1
    return {mode: found[mode] / len(items) for mode in modes}


def dense_speed(vectors: np.ndarray, queries: np.ndarray, rounds: int) -> dict[str, float]:
    """Top-10 queries/s over the same vectors: feilun's DenseIndex vs bare numpy."""
    from feilun.knowledge.dense import DenseIndex

    index = DenseIndex("bench", vectors)

    def ours(q: np.ndarray) -> None:
        top_k(index.score(q), 10)

    def bare(q: np.ndarray) -> None:
        scores = vectors @ q
        best = np.argpartition(-scores, 10)[:10]
        best[np.argsort(-scores[best])]

    totals: dict[Any, list[float]] = {ours: [], bare: []}
    for _ in range(rounds):
        spent = dict.fromkeys(totals, 0.0)
        for n, q in enumerate(queries):  # alternating query by query, and which goes first:
            for search in (ours, bare) if n % 2 else (bare, ours):  # load and cache hit both
                started = time.perf_counter()
                search(q)
                spent[search] += time.perf_counter() - started
        for search, seconds in spent.items():
            totals[search].append(seconds)
    return {"feilun": len(queries) / min(totals[ours]), "numpy": len(queries) / min(totals[bare])}


def query_embedding(embedder: Any, queries: list[str], bulk_ms: float) -> dict[str, float]:
    """Wall ms of embedding a query alone (p50, as a search does) vs per query in bulk.

    Wall time: a single query's cost on a shared machine is mostly waiting for torch's
    intra-op threads (two OpenMP threads on two busy cores wait on each other every layer).
    """
    from feilun.knowledge.dense import embed_query

    embed_query(embedder, queries[0])
    alone = []
    for query in queries:
        started = time.perf_counter()
        embed_query(embedder, query)
        alone.append(time.perf_counter() - started)
    return {"query_embedding_p50_ms": statistics.median(alone) * 1000, "bulk_ms": bulk_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scifact", type=Path, default=DATA / "scifact")
    parser.add_argument("--scifact-split", default="train")
    parser.add_argument("--cmrc", type=Path, default=DATA / "cmrc2018-retrieval")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-dense", action="store_true", help="BM25 only: no embedder")
    args = parser.parse_args()

    # Speed first, before torch (the embedder) shares the process.
    documents, queries, _ = read_beir(args.scifact, args.scifact_split)
    texts = [f"{d.title} {d.text}" for d in documents]
    speed = bm25_speed(texts, list(queries.values()), args.rounds)
    reference = {
        peer: peer_ndcg(args.scifact, args.scifact_split, peer) for peer in ("bm25s", "rank_bm25")
    }

    embedder = None
    modes = ["bm25"]
    if not args.skip_dense:
        from feilun.knowledge.embedders import DEFAULT_EMBEDDER, open_embedder

        embedder = open_embedder(DEFAULT_EMBEDDER)
        modes = ["bm25", "dense", "hybrid"]
    scifact, index = feilun_quality(args.scifact, args.scifact_split, modes, embedder)
    cmrc, _ = feilun_quality(args.cmrc, "test", ["bm25"], None)
    evidence = industry_evidence(embedder, modes)
    dense = None
    if index.dense is not None and embedder is not None:
        from feilun.knowledge.dense import embed_texts

        started = time.perf_counter()
        query_vectors = embed_texts(embedder, list(queries.values()))
        bulk_ms = (time.perf_counter() - started) / len(queries) * 1000
        dense = dense_speed(index.dense.vectors, query_vectors, args.rounds)
        dense |= query_embedding(embedder, list(queries.values())[:20], bulk_ms)
    report(scifact, cmrc, reference, speed, dense, len(texts), len(queries))
    print("\nIndustry QA: evidence in the top-5 chunks")
    print("  ".join(f"{mode} {share:.3f}" for mode, share in evidence.items()))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = {
        "scifact": scifact,
        "cmrc": cmrc,
        "industry_evidence_top5": evidence,
        "reference_bm25_ndcg@10": reference,
        "bm25_speed": speed,
        "dense_speed": dense,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
    }
    (results / "retrieval.json").write_text(json.dumps(out, indent=2), encoding="utf-8")


def report(
    scifact: dict[str, Any],
    cmrc: dict[str, Any],
    reference: dict[str, float],
    speed: dict[str, dict[str, float]],
    dense: dict[str, float] | None,
    n_docs: int,
    n_queries: int,
) -> None:
    print("\nQuality (nDCG@10)")
    print(f"{'data set':<16}{'mode':<10}{'feilun':>8}{'bm25s':>8}{'rank_bm25':>11}")
    for mode, result in scifact.items():
        peers = (
            f"{reference['bm25s']:>8.4f}{reference['rank_bm25']:>11.4f}" if mode == "bm25" else ""
        )
        print(f"{'scifact':<16}{mode:<10}{result['ndcg@10']:>8.4f}{peers}")
    for mode, result in cmrc.items():
        print(f"{'cmrc2018':<16}{mode:<10}{result['ndcg@10']:>8.4f}")
    print(f"\nBM25 speed, SciFact ({n_docs} documents, {n_queries} queries one at a time)")
    print(f"{'':<12}{'docs/s':>10}{'× bm25s':>9}{'queries/s':>11}{'× bm25s':>9}")
    base = speed["bm25s"]
    for name, row in speed.items():
        print(
            f"{name:<12}{row['docs_per_s']:>10.0f}{row['docs_per_s'] / base['docs_per_s']:>9.2f}"
            f"{row['queries_per_s']:>11.0f}{row['queries_per_s'] / base['queries_per_s']:>9.2f}"
        )
    if dense is not None:
        ratio = dense["feilun"] / dense["numpy"]
        print("\nDense top-10 search, same vectors (query embedding excluded)")
        print(f"feilun {dense['feilun']:.0f} queries/s, numpy {dense['numpy']:.0f} queries/s")
        print(f"ratio ×{ratio:.2f}")
        print(
            f"query embedding, wall: alone p50 {dense['query_embedding_p50_ms']:.1f} ms, "
            f"in bulk {dense['bulk_ms']:.1f} ms per query"
        )


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
