"""Retrieval quality: recall@k, MRR@10 and nDCG@10 over queries with relevance judgements.

Metrics follow BEIR (pytrec_eval): nDCG's gain is the judged score, queries without a
relevant document are left out, and a document is ranked by its best chunk. Qrels may name a
document by its name, its Feilun id or the id its source gave it (a BEIR corpus `_id`).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feilun.core.errors import BadInput
from feilun.core.protocols import Embedder
from feilun.core.records import Document
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.bases import Progress, index_documents
from feilun.knowledge.chunking import ChunkSettings
from feilun.knowledge.dense import embed_texts
from feilun.knowledge.library import Library
from feilun.knowledge.search import ChunkIndex, Mode, SearchSettings, rank_chunks

logger = logging.getLogger(__name__)

CUTOFFS = (10, 100)  # recall@10, recall@100; nDCG and MRR at 10
RANK_DEPTH = 100  # documents ranked per query
Qrels = dict[str, dict[str, int]]  # query id → document id → relevance


@dataclass
class EvalResult:
    """Mean metrics of one mode over the judged queries."""

    mode: str
    metrics: dict[str, float]
    queries: int
    documents: int
    chunks: int
    query_s: float = 0.0
    skipped_queries: list[str] = field(default_factory=list)  # judged but not in the queries
    skipped_documents: int = 0  # documents with no text

    def to_json(self) -> dict[str, Any]:
        """Metrics at the top level (`ndcg@10`, `recall@10`, …), then the counts."""
        return {
            **{k: round(v, 4) for k, v in self.metrics.items()},
            "mode": self.mode,
            "queries": self.queries,
            "documents": self.documents,
            "chunks": self.chunks,
            "skipped_documents": self.skipped_documents,
            "queries_per_s": round(self.queries / self.query_s, 1) if self.query_s else None,
        }


def score_ranking(ranking: Sequence[str], relevant: Mapping[str, int]) -> dict[str, float]:
    """nDCG@10, MRR@10 and recall@k of one ranked list of document ids."""
    judged = {doc: rel for doc, rel in relevant.items() if rel > 0}
    gains = [judged.get(doc, 0) for doc in ranking[:10]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(judged.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first = next((i for i, g in enumerate(gains) if g > 0), None)
    metrics = {
        "ndcg@10": dcg / idcg if idcg else 0.0,
        "mrr@10": 1.0 / (first + 1) if first is not None else 0.0,
    }
    for cutoff in CUTOFFS:
        found = sum(1 for doc in ranking[:cutoff] if doc in judged)
        metrics[f"recall@{cutoff}"] = found / len(judged) if judged else 0.0
    return metrics


def rank_documents(chunk_documents: Sequence[str], depth: int) -> list[str]:
    """Document ids of ranked chunks, each at the rank of its best chunk."""
    return list(dict.fromkeys(chunk_documents))[:depth]


def evaluate(
    index: ChunkIndex,
    queries: Mapping[str, str],
    qrels: Qrels,
    mode: Mode,
    *,
    embedder: Embedder | None = None,
    settings: SearchSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Mean metrics of `mode` over the queries that have a relevant document."""
    aliases = _document_aliases(index)
    judged = {
        qid: {aliases.get(doc, doc): rel for doc, rel in docs.items()}
        for qid, docs in qrels.items()
        if qid in queries and any(rel > 0 for rel in docs.values())
    }
    skipped = sorted(set(qrels) - set(queries))
    ids = sorted(judged)
    depth = min(index.size, RANK_DEPTH * 10)  # chunks, enough for 100 documents
    settings = (settings or SearchSettings()).model_copy(update={"candidates": depth})
    documents = [row["document_id"] for row in index.rows]
    vectors = None
    started = time.perf_counter()
    if mode != "bm25" and index.dense is not None and embedder is not None:
        vectors = embed_texts(embedder, [queries[q] for q in ids])
    totals: dict[str, float] = {}
    for n, qid in enumerate(ids):
        positions, _ = rank_chunks(
            index,
            queries[qid],
            depth,
            mode,
            embedder=embedder,
            query_vector=None if vectors is None else vectors[n],
            settings=settings,
        )
        ranking = rank_documents([documents[p] for p in positions.tolist()], RANK_DEPTH)
        for name, value in score_ranking(ranking, judged[qid]).items():
            totals[name] = totals.get(name, 0.0) + value
        if progress is not None:
            progress(n + 1, len(ids))
    elapsed = time.perf_counter() - started
    metrics = {name: total / len(ids) for name, total in totals.items()} if ids else {}
    return EvalResult(
        mode=mode,
        metrics=metrics,
        queries=len(ids),
        documents=len({row["document_id"] for row in index.rows}),
        chunks=index.size,
        query_s=elapsed,
        skipped_queries=skipped,
    )


def _document_aliases(index: ChunkIndex) -> dict[str, str]:
    """Every name a qrels file may use for a document (name, source id) → its Feilun id."""
    aliases: dict[str, str] = {}
    for row in index.rows:
        meta = row.get("meta", {})
        for alias in (meta.get("source_id"), meta.get("document")):
            if alias:
                aliases.setdefault(alias, row["document_id"])
    return aliases


def read_queries(path: Path) -> dict[str, str]:
    """`_id` (or `id`) → `text` of a BEIR queries JSONL file (plain or .gz)."""
    queries = {}
    for number, row in _jsonl(path):
        qid, text = row.get("_id", row.get("id")), row.get("text")
        if qid is None or not isinstance(text, str):
            raise BadInput(
                f"{path} line {number} has no `_id` and `text`",
                'write one query per line: {"_id": "q1", "text": "…"}',
            )
        queries[str(qid)] = text
    return queries


def read_qrels(path: Path) -> Qrels:
    """A BEIR qrels TSV (`query-id  corpus-id  score`, header optional)."""
    if not path.is_file():
        raise BadInput(f"no qrels file at {path}", "give a TSV of query-id, corpus-id, score")
    qrels: Qrels = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        parts = line.rstrip("\n").split("\t")
        if not line.strip() or (number == 1 and parts[0] == "query-id"):
            continue
        try:
            qid, doc, score = parts[0], parts[1], int(float(parts[-1])) if len(parts) > 2 else 1
        except (IndexError, ValueError) as e:
            raise BadInput(
                f"{path} line {number} is not `query-id<TAB>corpus-id<TAB>score`: {line!r}",
                "fix the line, or write the file in BEIR's qrels layout",
            ) from e
        qrels.setdefault(qid, {})[doc] = score
    return qrels


def read_beir(folder: Path, split: str) -> tuple[list[Document], dict[str, str], Qrels]:
    """(Documents named by their `_id`, queries, qrels of `split`) of a BEIR folder."""
    folder = Path(folder)
    corpus = _first_existing(folder, ("corpus.jsonl", "corpus.jsonl.gz"))
    queries_path = _first_existing(folder, ("queries.jsonl", "queries.jsonl.gz"))
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise BadInput(
            f"{folder} has no qrels for split {split!r}; splits: {', '.join(splits) or 'none'}",
            f"pass --split {splits[0]}" if splits else "add qrels/<split>.tsv",
        )
    documents = [_beir_document(row, folder.name) for _, row in _jsonl(corpus)]
    return documents, read_queries(queries_path), read_qrels(qrels_path)


def _beir_document(row: Mapping[str, Any], collection: str) -> Document:
    doc_id = str(row.get("_id", row.get("id", "")))
    title = str(row.get("title") or "")
    return Document(
        name=doc_id,
        source_id=doc_id,
        collection=collection,
        title=title,
        text=str(row.get("text") or "") or title,
    )


def _first_existing(folder: Path, names: Sequence[str]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise BadInput(
        f"{folder} has no {' or '.join(names)}",
        "point --beir at a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv",
    )


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path} line {number} is not JSON: {e.msg}", "fix the line") from e
            if isinstance(row, dict):
                yield number, row


def evaluate_beir(
    folder: Path,
    split: str,
    mode: Mode,
    *,
    chunking: ChunkSettings | None = None,
    embedder: Embedder | None = None,
    settings: SearchSettings | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Index a BEIR folder in memory (documents keep their `_id`) and evaluate `mode` on it."""
    documents, queries, qrels = read_beir(folder, split)
    index, _, skipped = index_documents(
        documents, chunking or ChunkSettings(), Analyzer(), embedder, progress
    )
    result = evaluate(
        index,
        queries,
        qrels,
        mode,
        embedder=embedder,
        settings=settings,
        progress=None if progress is None else lambda d, t: progress("query", d, t),
    )
    result.skipped_documents = len(skipped)
    return result


def evaluate_kb(
    library: Library,
    ref: str,
    queries_path: Path,
    qrels_path: Path,
    mode: Mode,
    *,
    settings: SearchSettings | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate `mode` on KB `ref` with a queries JSONL file and a qrels TSV file."""
    queries, qrels = read_queries(queries_path), read_qrels(qrels_path)
    loaded = library.load(ref)
    embedder = None
    if mode != "bm25" and loaded.manifest.embedder:
        embedder = library.embedder(loaded.manifest.embedder)
    return evaluate(
        loaded.index,
        queries,
        qrels,
        mode,
        embedder=embedder,
        settings=settings,
        progress=None if progress is None else lambda d, t: progress("query", d, t),
    )
