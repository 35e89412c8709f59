"""RAG on ../shared/data/industry: evidence in the top 5 per retrieval mode, and answer latency.

Ingests the regulations into a temporary workspace, builds a knowledge base (with the packaged
MiniLM embedder, so all three modes run), then for every QA item:
- retrieval: does a top-5 chunk of each mode hold the item's evidence (whitespace ignored)?
- answering (`--answers N` items, the packaged SmolLM2 on the CPU): retrieval time vs
  generation time, whether the question was answered, citations, unsupported sentences.
The peer is the same model asked the bare question (no retrieval), timed in the same run.
- planning (no model): CPU time per question of `RagChatModel.plan` (retrieve, then judge each
  hit's relevance), split into the retrieval and the relevance check; the peer re-analyses
  each retrieved chunk's text at the question, as `plan` did before chunk terms were stored.

    .venv/bin/python benchmarks/rag.py [--answers 10] [--max-tokens 64]
    .venv/bin/python benchmarks/rag.py --embedder none --answers 0   # BM25 only, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from typer.testing import CliRunner

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "industry"


def feilun(workspace: Path, *args: str) -> None:
    from feilun.cli.main import app

    result = CliRunner().invoke(app, [*args, "--workspace", str(workspace)])
    if result.exit_code != 0:
        raise RuntimeError(result.output)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=10, help="questions answered by the model")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--embedder", default="all-minilm-l6-v2", help="or none: BM25 only")
    parser.add_argument("--rounds", type=int, default=3, help="planning rounds (least CPU time)")
    args = parser.parse_args()
    from feilun.app.answering import open_library, open_rag_model
    from feilun.app.workspace import opened
    from feilun.core.protocols import GenerationParams
    from feilun.core.records import Message
    from feilun.knowledge.retrieval import retrieve

    items = [json.loads(line) for line in (DATA / "qa.jsonl").open(encoding="utf-8")]
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        feilun(workspace, "init")
        feilun(workspace, "data", "ingest", str(DATA / "docs"), "--collection", "ind", "-r")
        started = time.perf_counter()
        feilun(workspace, "kb", "create", "ind", "--from", "ind", "--embedder", args.embedder)
        print(f"knowledge base built in {time.perf_counter() - started:.0f} s")
        with opened(workspace) as ws:
            library = open_library(ws)
            print(f"\n{len(items)} questions: evidence in the top 5 chunks")
            modes = ("bm25", "dense", "hybrid") if args.embedder != "none" else ("bm25",)
            for mode in modes:
                found = {"zh": 0, "en": 0}
                began = time.perf_counter()
                for item in items:
                    hits = retrieve(library, "ind", item["question"], 5, mode)
                    evidence = squash(item["evidence"])
                    found[item["lang"]] += any(evidence in squash(h.text) for h in hits)
                per_query_ms = (time.perf_counter() - began) / len(items) * 1000
                share = sum(found.values()) / len(items)
                print(
                    f"  {mode:7s} {share:6.1%}  zh {found['zh']}  en {found['en']}  "
                    f"{per_query_ms:6.1f} ms/query"
                )
            time_planning(library, [item["question"] for item in items], args.rounds)
            if args.answers <= 0:
                return
            _, rag = open_rag_model(ws, library, "ind")
            params = GenerationParams(max_tokens=args.max_tokens)
            retrieval, generation, bare, answered, unsupported = [], [], [], 0, 0
            for item in items[: args.answers]:
                messages = [Message(role="user", content=item["question"])]
                began = time.perf_counter()
                rag.plan(messages)
                retrieval.append(time.perf_counter() - began)
                began = time.perf_counter()
                completion = rag.chat(messages, params)
                generation.append(time.perf_counter() - began)
                grounding = completion.grounding
                answered += bool(grounding and grounding.answered)
                unsupported += len(grounding.unsupported_sentences) if grounding else 0
                began = time.perf_counter()
                rag.model.chat(messages, params)
                bare.append(time.perf_counter() - began)
    count = len(retrieval)
    print(f"\n{count} answers by the packaged model (max_tokens={args.max_tokens}), CPU")
    print(f"  retrieval  p50 {statistics.median(retrieval) * 1000:8.1f} ms")
    print(f"  generation p50 {statistics.median(generation):8.2f} s (with passages)")
    print(f"  bare model p50 {statistics.median(bare):8.2f} s (no retrieval, the peer)")
    print(f"  answered {answered}/{count}; unsupported sentences flagged: {unsupported}")


def time_planning(library: Any, questions: list[str], rounds: int) -> None:
    """CPU time per question of RAG planning (BM25, k=5), least of `rounds` rounds."""
    from feilun.core.records import Message
    from feilun.knowledge.rag import RagChatModel
    from feilun.knowledge.retrieval import retrieve

    analyzer = library.load("ind").index.analyzer

    def plan_all() -> None:
        rag = RagChatModel(cast(Any, object()), library, "ind")  # no model: planning only
        for question in questions:
            rag.plan([Message(role="user", content=question)])

    def retrieve_all() -> None:
        for question in questions:
            retrieve(library, "ind", question, 5, "bm25")

    def reanalyse_all() -> None:  # the peer: what each question cost before terms were stored
        for question in questions:
            for hit in retrieve(library, "ind", question, 5, "bm25"):
                frozenset(analyzer.analyze(hit.text))

    def least(run: Any) -> float:
        times = []
        for _ in range(rounds):
            started = time.process_time()
            run()
            times.append(time.process_time() - started)
        return min(times) / len(questions) * 1000

    plan_all()  # warm: jieba's dictionary, the analyzer's word table
    plan_ms, retrieve_ms, peer_ms = least(plan_all), least(retrieve_all), least(reanalyse_all)
    print(f"\nRAG planning, {len(questions)} questions, CPU ms per question (least of {rounds})")
    print(f"  retrieve (bm25, k=5)           {retrieve_ms:7.2f}")
    print(
        f"  plan = retrieve + relevance    {plan_ms:7.2f}  (relevance {plan_ms - retrieve_ms:.2f})"
    )
    reanalysis_ms = peer_ms - retrieve_ms
    print(f"  peer: retrieve + re-analyse    {peer_ms:7.2f}  (re-analysis {reanalysis_ms:.2f})")


if __name__ == "__main__":
    main()
