"""The judge task against OpenAI-compatible endpoints whose replies follow from the prompt."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from feilun.core.errors import BadInput, ConfigError
from feilun.evaluation import results
from feilun.evaluation.judge import PROMPTS, outcome, parse_score, parse_winner
from feilun.evaluation.reports import load_payload
from feilun.evaluation.suites import Suite, load_suite, run_suite

from .conftest import ChatEndpoint, shared

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [
    {"id": "zh1", "question": "临时停气要提前多久通知用户？", "reference": "提前48小时"},
    {"id": "en1", "question": "How often are PE-100 lines inspected?", "reference": "Yearly."},
    {"id": "en2", "question": "Who files the report?", "reference": "The operator files it."},
]
_BLOCK = re.compile(r"<<<\n(.*?)\n>>>", re.DOTALL)


def student(body: dict[str, Any]) -> str:
    """The model under test: a long answer to Chinese questions, a short one otherwise."""
    question = body["messages"][-1]["content"]
    return "根据规定，应当提前48小时公告或者书面通知燃气用户。" if "停气" in question else "No."


@pytest.fixture
def items(tmp_path: Path) -> Path:
    path = tmp_path / "judged.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ITEMS), encoding="utf-8")
    return path


def _suite(path: Path, **task: Any) -> Suite:
    spec = {"name": "judged", "kind": "judge", "path": str(path), "judge": "grader", **task}
    return Suite.model_validate({"name": "judge-test", "tasks": [spec]})


def _run(ctx, path: Path, judge_reply, **task: Any) -> tuple[dict[str, Any], Any]:
    with ChatEndpoint(student) as model, ChatEndpoint(judge_reply) as judge:
        ctx.models.add("student", "upstream", model.url)
        ctx.models.add("grader", "upstream", judge.url)
        report = run_suite(ctx, _suite(path, **task), "student")
    return load_payload(ctx.artifacts, report)["tasks"][0], report


def test_verdicts_are_read_from_lines_or_json() -> None:
    assert parse_score("The answer is right.\nScore: 4") == "4"
    assert parse_score('理由：正确。{"score": 5}') == "5"
    assert parse_score("评分：3") == "3"
    assert parse_score("Score: 7") == "" and parse_score("great answer") == ""
    assert parse_winner("B is clearer.\nWinner: B") == "B"
    assert parse_winner('{"winner": "tie"}') == "tie" and parse_winner("A or B?") == ""
    assert outcome("A", "B") == "win" and outcome("B", "A") == "loss"
    assert outcome("A", "A") == "tie" and outcome("tie", "B") == "tie"


def test_rubric_scores_in_the_items_language_with_retries(ctx, items) -> None:
    seen: list[dict[str, Any]] = []

    def judge(body: dict[str, Any]) -> str:
        seen.append(body)
        asked = body["messages"][1]["content"]
        if "PE-100" in asked:  # always garbage: retried, then an error
            return "What a lovely answer!"
        if "Who files" in asked and len(body["messages"]) == 2:  # garbage once, then obeys
            return "Hmm."
        answer = _BLOCK.findall(asked)[-1]
        return "理由：回答正确。\nScore: 5" if "48小时" in answer else '{"score": 2}'

    task, report = _run(ctx, items, judge, retries=2)
    rows = {r["id"]: r for r in task["items"]}
    assert rows["zh1"]["score"] == 5.0 and rows["en2"]["score"] == 2.0
    assert len(rows["en2"]["judge"][0]) == 2  # the first reply, then the one after the reminder
    assert rows["en1"]["score"] is None and "unreadable after 3 attempts" in rows["en1"]["error"]
    assert task["n"] == 2 and task["errors"] == 1
    assert report.scores["judged/score"] == pytest.approx(3.5)
    zh = next(b for b in seen if "停气" in b["messages"][1]["content"])
    assert "评分标准" in zh["messages"][1]["content"] and "参考答案" in zh["messages"][1]["content"]
    en1 = [b for b in seen if "PE-100" in b["messages"][1]["content"]]
    assert len(en1) == 3 and en1[-1]["messages"][-1]["content"] == PROMPTS["en"]["retry_rubric"]
    assert "Rubric:" in en1[0]["messages"][1]["content"]


def test_pairwise_swaps_positions_and_ties_when_orders_disagree(ctx, items) -> None:
    orders: dict[str, list[tuple[str, str]]] = {}

    def longer_wins(body: dict[str, Any]) -> str:
        asked = body["messages"][1]["content"]
        a, b = _BLOCK.findall(asked)[-2:]
        orders.setdefault(asked.split("\n\n")[1], []).append((a, b))
        if "How often" in asked:  # position bias: always the first answer
            return "Winner: A"
        return "Winner: A" if len(a) > len(b) else "Winner: B"

    task, report = _run(ctx, items, longer_wins, mode="pairwise")
    rows = {r["id"]: r for r in task["items"]}
    # The model's long Chinese answer beats the reference in both orders; "No." loses both.
    assert rows["zh1"]["verdicts"] == ["A", "B"] and rows["zh1"]["outcome"] == "win"
    assert rows["en2"]["outcome"] == "loss" and rows["en1"]["outcome"] == "tie"
    assert all(len(pair) == 2 and pair[0] == pair[1][::-1] for pair in orders.values())
    assert report.scores["judged/score"] == pytest.approx(0.5)
    assert report.scores["judged/win_rate"] == pytest.approx(1 / 3)
    assert report.scores["judged/tie_rate"] == pytest.approx(1 / 3)


def test_a_judge_that_times_out_marks_items_as_errors(ctx, items, monkeypatch) -> None:
    monkeypatch.setattr(results, "RETRY_WAIT_S", 0.01)
    with ChatEndpoint(student) as model, ChatEndpoint(lambda body: "Score: 5") as judge:
        judge.failures = 1000
        ctx.models.add("student", "upstream", model.url)
        ctx.models.add("grader", "upstream", judge.url)
        report = run_suite(ctx, _suite(items), "student")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    assert task["n"] == 0 and task["errors"] == 3
    assert judge.calls == 3 * results.RETRIES  # backoff retries, never a re-ask for format
    assert all(r["error"].startswith("judge: BackendUnavailable") for r in task["items"])


def test_bad_judge_tasks_fail_naming_the_problem(ctx, items, tmp_path) -> None:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"name: s\ntasks:\n  - {{name: t, kind: judge, path: {items}}}\n")
    with pytest.raises(ConfigError, match="a judge task needs `judge`"):
        load_suite(suite_file)
    no_reference = tmp_path / "bare.jsonl"
    no_reference.write_text('{"question": "Why?"}\n')
    with pytest.raises(BadInput, match="pairwise mode needs one"):
        run_suite(ctx, _suite(no_reference, mode="pairwise"), "tiny")
    with pytest.raises(BadInput, match="rubric file .*missing.md does not exist"):
        run_suite(ctx, _suite(items, rubric="missing.md"), "tiny")


def test_the_shipped_judge_suite_loads() -> None:
    suite, _ = load_suite(ROOT / "recipes" / "eval" / "judge.yaml")
    (task,) = suite.tasks
    assert task.kind == "judge" and task.judge and task.rubric
    shared("industry", "qa.jsonl")
