"""The rag task over a knowledge base of real regulations: hit@k, citations, faithfulness."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feilun.app.answering import kb_access_opener, open_library
from feilun.app.workspace import Workspace, opened
from feilun.core.errors import ConfigError
from feilun.core.protocols import Hit
from feilun.data.ingest import ingest
from feilun.evaluation import results
from feilun.evaluation.rag import RagItem, holds
from feilun.evaluation.reports import load_payload
from feilun.evaluation.suites import EvalContext, Suite, load_suite, run_suite
from feilun.knowledge.bases import create_kb
from feilun.knowledge.retrieval import KbRetriever

from .conftest import ChatEndpoint, shared

ROOT = Path(__file__).resolve().parents[2]
# Three Chinese regulations in the knowledge base; 消防法 stays out of it.
IN_KB = ("城镇燃气管理条例(2016-02-06).md", "安全生产许可证条例(2014-07-29).md")
IN_KB += ("生产安全事故应急条例(2019-02-17).md",)
OUTSIDE = "zh/消防法(2021-04-29).md"
_PASSAGE = re.compile(r"\[(\d+)\] [^\n]*\n<<<\n(.*?)\n>>>", re.DOTALL)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def long_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with room for passages (its tokenizer spends ~3 tokens a hanzi)."""
    from feilun.models.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny-long") / "model"
    model, tokenizer = build_tiny_model(context_length=2048)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def laws(workspace: Path, long_tiny: Path) -> Iterator[tuple[Workspace, EvalContext]]:
    """Knowledge base `laws` (BM25) over three regulations; the long tiny model as `tiny-long`."""
    docs = [shared("industry", "docs", "zh", name) for name in IN_KB]
    with opened(workspace, env={}) as ws:
        ingest(docs, "laws", catalog=ws.catalog, artifacts=ws.artifacts)
        create_kb(open_library(ws), "laws", "laws", embedder="none")
        ws.models.add("tiny-long", "safetensors", str(long_tiny))
        yield ws, EvalContext(ws.catalog, ws.artifacts, ws.models, open_rag=kb_access_opener(ws))


@pytest.fixture
def items_file(tmp_path: Path) -> Path:
    """The industry QA items on the three regulations, and one on a law outside the KB."""
    rows = [json.loads(line) for line in shared("industry", "qa.jsonl").open(encoding="utf-8")]
    kept = [r for r in rows if r["doc"].removeprefix("zh/") in IN_KB]
    kept.append(next(r for r in rows if r["doc"] == OUTSIDE))
    path = tmp_path / "rag.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in kept), encoding="utf-8")
    return path


def _suite(path: Path, **task: Any) -> Suite:
    spec = {"name": "laws", "kind": "rag", "path": str(path), "kb": "laws", **task}
    return Suite.model_validate({"name": "rag-test", "tasks": [spec]})


def test_a_passage_holds_evidence_by_substring_overlap_or_chunk_id() -> None:
    evidence = "燃气经营者停业、歇业的，应当在90个工作日前向所在地燃气管理部门报告"
    passage = Hit(
        chunk_id="chk_1", score=1.0, text="第二十条 " + evidence[:20] + " 经批准方可停业。"
    )
    assert holds(Hit(chunk_id="c", score=1.0, text="前文。" + evidence + "。"), evidence)
    assert holds(passage, evidence)  # 20 of its 33 characters, in one run
    assert not holds(Hit(chunk_id="c", score=1.0, text=evidence[:10]), evidence)
    assert holds(Hit(chunk_id="chk_1", score=1.0, text="other"), "chk_1")
    english = Hit(chunk_id="c", score=1.0, text="A planned outage is\nannounced two days ahead.")
    assert holds(english, "outage is announced  two days")


def test_rag_scores_retrieval_hits_against_known_evidence(laws, items_file) -> None:
    ws, ctx = laws
    report = run_suite(ctx, _suite(items_file, max_tokens=8), "tiny-long")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    assert task["kind"] == "rag" and task["errors"] == 0
    assert task["config"]["kb"] == "laws@1" and task["config"]["k"] == 5
    retriever = KbRetriever(open_library(ws), "laws", mode="bm25")
    gold = {json.loads(line)["id"]: json.loads(line) for line in items_file.open()}
    for row in task["items"]:
        hits = retriever.retrieve(gold[row["id"]]["question"], 5)
        assert row["retrieved"] == [h.chunk_id for h in hits]
        expected = any(squash(gold[row["id"]]["evidence"]) in squash(h.text) for h in hits)
        assert row["scores"]["hit_at_k"] == float(expected), row["id"]
    outside = task["items"][-1]
    assert outside["scores"]["hit_at_k"] == 0.0
    hits = [r["scores"]["hit_at_k"] for r in task["items"]]
    assert sum(hits) >= len(hits) - 3  # BM25 finds most of them
    assert report.scores["laws/hit_at_k"] == pytest.approx(sum(hits) / len(hits))
    # A random model cites nothing: recall 0, precision undefined (left out, not zero).
    assert all(r["scores"]["citation_recall"] == 0.0 for r in task["items"] if not r["cited"])
    assert task["subjects"]["citation_precision"]["n"] == sum(
        1 for r in task["items"] if r["cited"]
    )


def test_citation_precision_recall_and_faithfulness_from_an_endpoint(laws, items_file) -> None:
    _, ctx = laws
    evidence = {
        json.loads(line)["question"]: json.loads(line)["evidence"] for line in items_file.open()
    }
    order = {question: i for i, question in enumerate(evidence)}
    plan: dict[str, str] = {}

    def reply(body: dict[str, Any]) -> str:
        asked = body["messages"][-1]["content"]
        question = asked.rsplit("问题：", 1)[-1]
        passages = {int(n): squash(text) for n, text in _PASSAGE.findall(asked)}
        holding = [n for n, text in passages.items() if squash(evidence[question]) in text]
        if not holding:
            plan[question] = "none"
            return "资料中没有答案。"
        if order[question] % 3 == 2:  # every third item cites a passage without the evidence
            # (by item, not by arrival: the questions are asked concurrently)
            wrong = [n for n in passages if n not in holding]
            if wrong:
                plan[question] = "wrong"
                return f"月球距离地球约三十八万公里[{wrong[0]}]。"
        plan[question] = "right"
        return f"{evidence[question]}[{holding[0]}]。"

    with ChatEndpoint(reply) as server:
        ctx.models.add("reader", "upstream", server.url)
        report = run_suite(ctx, _suite(items_file), "reader")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    by_question = {r["id"]: r for r in task["items"]}
    ids = {json.loads(line)["question"]: json.loads(line)["id"] for line in items_file.open()}
    kinds = {
        kind: [by_question[ids[q]] for q, k in plan.items() if k == kind] for kind in plan.values()
    }
    assert kinds["right"] and kinds["wrong"]
    for row in kinds["right"]:
        assert row["scores"]["citation_recall"] == 1.0 and row["scores"]["faithfulness"] == 1.0
        assert row["scores"]["citation_precision"] == 1.0
    for row in kinds["wrong"]:
        assert row["scores"]["citation_recall"] == 0.0
        assert row["scores"]["citation_precision"] == 0.0
        assert row["unsupported"] == ["月球距离地球约三十八万公里。"]
        assert row["scores"]["faithfulness"] == 0.0
    recall = [r["scores"]["citation_recall"] for r in task["items"]]
    assert report.scores["laws/citation_recall"] == pytest.approx(sum(recall) / len(recall))


def test_an_unreachable_model_marks_rag_items_as_errors(laws, items_file, monkeypatch) -> None:
    _, ctx = laws
    monkeypatch.setattr(results, "RETRY_WAIT_S", 0.01)
    with ChatEndpoint(lambda body: "unused") as server:
        server.failures = 1000
        ctx.models.add("down", "upstream", server.url)
        report = run_suite(ctx, _suite(items_file, limit=2), "down")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    assert task["n"] == 0 and task["errors"] == 2 and server.calls == 2 * results.RETRIES
    assert all("BackendUnavailable" in r["error"] and r["score"] is None for r in task["items"])


def test_rag_tasks_need_a_kb_and_a_run_that_can_open_it(ctx, items_file, tmp_path) -> None:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"name: s\ntasks:\n  - {{name: t, kind: rag, path: {items_file}}}\n")
    with pytest.raises(ConfigError, match="a rag task needs `kb`"):
        load_suite(suite_file)
    with pytest.raises(ConfigError, match="without knowledge bases"):
        run_suite(ctx, _suite(items_file), "tiny")


def test_the_shipped_rag_suite_reads_the_industry_items() -> None:
    suite, _ = load_suite(ROOT / "recipes" / "eval" / "rag.yaml")
    (task,) = suite.tasks
    assert task.kind == "rag" and task.kb == "industry"
    from feilun.evaluation.rag import load_rag

    loaded = load_rag(shared("industry", "qa.jsonl"))
    assert len(loaded.items) == 83 and not loaded.skipped
    assert all(len(item.evidence) == 1 for item in loaded.items)
    assert isinstance(loaded.items[0], RagItem)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # SmolLM2 reads ~1500-token prompts; minutes on a busy 2-core CPU
def test_the_rag_suite_with_the_packaged_model_on_the_industry_set(workspace, monkeypatch) -> None:
    docs = [shared("industry", "docs", lang) for lang in ("zh", "en")]
    monkeypatch.chdir(ROOT)
    with opened(workspace, env={}) as ws:
        ingest(docs, "industry", catalog=ws.catalog, artifacts=ws.artifacts)
        create_kb(open_library(ws), "industry", "industry", embedder="none")
        ws.models.ensure_packaged()
        ctx = EvalContext(ws.catalog, ws.artifacts, ws.models, open_rag=kb_access_opener(ws))
        suite, base = load_suite(ROOT / "recipes" / "eval" / "rag.yaml")
        report = run_suite(ctx, suite, "smollm2-135m-instruct", base=base, limit=10)
        task = load_payload(ws.artifacts, report)["tasks"][0]
    assert task["n"] == 10 and task["errors"] == 0
    assert report.scores["industry/hit_at_k"] >= 0.8
    assert 0.0 <= report.scores["industry/faithfulness"] <= 1.0
