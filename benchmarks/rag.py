"""RAG on ../shared/data/industry: evidence in the top 5 per retrieval mode, and answer latency.

Ingests the regulations into a temporary workspace, builds a knowledge base (with the packaged
MiniLM embedder, so all three modes run), then for every QA item:
- retrieval: does a top-5 chunk of each mode hold the item's evidence (whitespace ignored)?
- answering (`--answers N` items, the packaged SmolLM2 on the CPU): retrieval time vs
  generation time, whether the question was answered, citations, unsupported sentences.
The peer is the same model asked the bare question (no retrieval), timed in the same run.

    .venv/bin/python benchmarks/rag.py [--answers 10] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

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
        feilun(workspace, "kb", "create", "ind", "--from", "ind")
        print(f"knowledge base built in {time.perf_counter() - started:.0f} s")
        with opened(workspace) as ws:
            library = open_library(ws)
            print(f"\n{len(items)} questions: evidence in the top 5 chunks")
            for mode in ("bm25", "dense", "hybrid"):
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


if __name__ == "__main__":
    main()
