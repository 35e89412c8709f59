from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from feilun.evaluation import results
from feilun.evaluation.items import LETTERS, McItem, load_mc
from feilun.evaluation.mc import STYLES, parse_letter, render_context
from feilun.evaluation.reports import load_payload
from feilun.evaluation.suites import Suite, run_suite

from .conftest import ChatEndpoint, shared

# lm-evaluation-harness's `mmlu` task (default template): description, doc_to_text, " A".
LM_EVAL_MMLU_1SHOT = (
    "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\n"
    "Answer: B\n\n"
    "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | "
    "If H and K are subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\n"
    "C. True, False\nD. False, True\nAnswer:"
)


def test_mmlu_prompts_are_rendered_as_lm_eval_renders_them() -> None:
    items = load_mc(shared("mmlu", "original", "dev", "abstract_algebra_dev.csv")).items
    assert render_context(items[1], [items[0]], STYLES["mmlu"]) == LM_EVAL_MMLU_1SHOT


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("B", 1),
        (" (C) because…", 2),
        ("The answer is D.", 3),
        ("答案：A", 0),
        ("我选B。", 1),
        ("I think it is A", 0),
        ("None of them", None),
        ("E", None),  # only four options
    ],
)
def test_generated_letters_are_parsed(text: str, index: int | None) -> None:
    assert parse_letter(text, 4) == index


def _mmlu_suite(limit: int, **task: Any) -> Suite:
    path = shared("mmlu", "val.jsonl")
    return Suite.model_validate(
        {
            "name": "mmlu-dev",
            "tasks": [{"name": "mmlu", "kind": "mc", "path": str(path), "limit": limit, **task}],
        }
    )


def test_local_model_scores_options_by_loglikelihood(ctx) -> None:
    report = run_suite(ctx, _mmlu_suite(24, shots=1), "tiny")
    payload = load_payload(ctx.artifacts, report)
    task = payload["tasks"][0]
    assert task["scoring"] == "loglikelihood" and task["n"] == 24 and task["errors"] == 0
    for item in task["items"]:
        assert len(item["logprobs"]) == 4
        best = max(range(4), key=item["logprobs"].__getitem__)
        assert item["pred"] == LETTERS[best]
        assert item["score"] == float(item["pred"] == item["gold"])
    accuracy = sum(i["score"] for i in task["items"]) / 24
    assert report.scores["mmlu/accuracy"] == pytest.approx(accuracy)
    subjects = task["subjects"]
    assert sum(s["n"] for s in subjects.values()) == 24
    macro = sum(s["accuracy"] for s in subjects.values()) / len(subjects)
    assert report.scores["mmlu/macro_accuracy"] == pytest.approx(macro)
    low, high = task["metrics"]["accuracy"]["low"], task["metrics"]["accuracy"]["high"]
    assert low <= accuracy <= high
    # The pinned settings: prompt template, few-shot ids, seed; and the lineage.
    assert task["prompt"]["description"].startswith("The following are multiple choice")
    assert all(len(ids) == 2 for ids in task["fewshot"].values())  # k + 1 from the file itself
    assert payload["seed"] == 1234 and report.inputs == [ctx.models.get("tiny").id]
    again = run_suite(ctx, _mmlu_suite(24, shots=1), "tiny")
    assert again.scores == report.scores and again.version == report.version + 1


@pytest.fixture
def endpoint(ctx) -> Iterator[ChatEndpoint]:
    """An OpenAI-compatible endpoint that knows the answers: the generated-letter path."""
    items = load_mc(shared("mmlu", "val.jsonl")).items[:10]
    answers = {_question(item): LETTERS[item.answer] for item in items}

    def reply(body: dict[str, Any]) -> str:
        return f"The answer is {answers.get(body['messages'][-1]['content'], 'Z')}."

    with ChatEndpoint(reply) as server:
        ctx.models.add("oracle", "upstream", server.url, meta={"upstream_model": "oracle"})
        yield server


def _question(item: McItem) -> str:
    from feilun.evaluation.mc import render_question

    return render_question(item, STYLES["mmlu"])


def test_endpoint_answers_are_scored_by_their_letter(ctx, endpoint) -> None:
    report = run_suite(ctx, _mmlu_suite(10, shots=2, format="mmlu"), "oracle")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    assert task["scoring"] == "generate" and task["decoding"]["temperature"] == 0.0
    assert report.scores["mmlu/accuracy"] == 1.0
    assert task["items"][0]["generation"].startswith("The answer is ")


def test_an_endpoint_that_fails_is_retried_then_its_items_are_errors_not_wrong(
    ctx, endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "RETRY_WAIT_S", 0.01)
    endpoint.failures = 2  # the first two calls fail: retried, then answered
    report = run_suite(ctx, _mmlu_suite(3, format="mmlu"), "oracle")
    assert report.scores["mmlu/accuracy"] == 1.0 and endpoint.calls == 5
    endpoint.failures = 10**6  # down for good
    report = run_suite(ctx, _mmlu_suite(3, format="mmlu"), "oracle")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    assert task["errors"] == 3 and task["n"] == 0
    assert all("BackendUnavailable" in i["error"] and i["score"] is None for i in task["items"])
    assert report.meta["tasks"]["mmlu"] == {"kind": "mc", "n": 0, "errors": 3}
