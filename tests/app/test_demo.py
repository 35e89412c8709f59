"""The demo's question set and its answer-key feedback, without training anything.

The packaged corpus must be self-consistent (every answer's evidence is in its document, the
held-out items ask nothing the training items ask), a user's question set must load or fail
with a clear reason, and the simulated users must rate real served answers over HTTP: an
up-vote when the answer matches the key, a down-vote with the key as the correction, and no
second row when a round is repeated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from feilun.app.demo_data import (
    SPLITS,
    eval_rows,
    load_items,
    of_split,
    packaged_corpus,
    sft_rows,
    write_jsonl,
)
from feilun.app.demo_users import feedback_round, judge, tally
from feilun.app.workspace import init_workspace
from feilun.core.errors import BadInput
from feilun.evaluation.items import load_qa
from feilun.models.registry import ModelRegistry
from feilun.store.schema import feedback


def test_packaged_corpus_is_consistent() -> None:
    docs, qa = packaged_corpus()
    items = load_items(qa)
    assert {item.split for item in items} == set(SPLITS)
    assert {item.lang for item in items} == {"zh", "en"}
    files = {p.name: p.read_text(encoding="utf-8") for p in docs.iterdir()}
    assert {Path(name).suffix for name in files} == {".md", ".txt", ".html"}
    for item in items:
        assert item.evidence in files[item.doc], item.id
        assert item.answer.replace(",", "") in item.evidence.replace(",", ""), item.id
    facts = {item.fact for item in items}
    assert facts == {item.fact for item in of_split(items, "eval")}  # every fact is tested
    held_out = {item.question for item in of_split(items, "eval")}
    asked = {item.question for item in items if item.split != "eval"}
    assert not held_out & asked
    # facts only the users' feedback teaches: asked by users, never in the seed training set
    trained = {item.fact for item in of_split(items, "train")}
    assert {item.fact for item in of_split(items, "users")} - trained


def test_rows_are_what_training_and_evaluation_read(tmp_path: Path) -> None:
    items = load_items(packaged_corpus()[1])
    row = sft_rows(of_split(items, "train"))[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][1]["content"].startswith("Question: ")
    assert row["messages"][2]["content"] == items[0].answer
    held_out = of_split(items, "eval")
    path = write_jsonl(tmp_path / "e.jsonl", eval_rows(held_out, ["passage"] * len(held_out)))
    loaded = load_qa(path)
    assert not loaded.skipped and len(loaded.items) == len(held_out)
    assert loaded.items[0].context == "passage" and loaded.items[0].answers == (held_out[0].answer,)


def test_items_without_split_are_split_by_fact(tmp_path: Path) -> None:
    rows = [
        {"id": f"q{i}", "question": f"Question {i}?", "answer": str(i), "fact": f"f{i // 2}"}
        for i in range(60)
    ]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    items = load_items(path)
    by_fact: dict[str, set[str]] = {}
    for item in items:
        by_fact.setdefault(item.fact, set()).add(item.split)
    assert all(len(splits) == 1 for splits in by_fact.values())  # a fact stays on one side
    counts = {split: len(of_split(items, split)) for split in SPLITS}
    assert counts["train"] > counts["users"] > 0 and counts["eval"] > 0, counts
    assert load_items(path) == items  # stable


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "question": "Q?"}, "has no `answer`"),
        ({"id": "a", "question": "Q?", "answer": "x", "split": "test"}, "split 'test' is unknown"),
        ("not an object", "is not a JSON object"),
    ],
)
def test_bad_items_say_what_is_wrong(tmp_path: Path, row: object, message: str) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(BadInput, match=message):
        load_items(path)


def test_a_missing_split_or_repeated_id_is_refused(tmp_path: Path) -> None:
    rows = [{"id": "a", "question": "Q?", "answer": "x", "split": "train"}]
    with pytest.raises(BadInput, match="no users or eval items"):
        load_items(write_jsonl(tmp_path / "one.jsonl", rows))
    with pytest.raises(BadInput, match="repeated ids a"):
        load_items(write_jsonl(tmp_path / "two.jsonl", rows * 2))


@pytest.mark.parametrize(
    ("answer", "key", "correct"),
    [
        ("The maximum operating pressure is 0.38 MPa.", "0.38 MPa", True),  # contains the key
        ("8 years", "every 8 years", True),  # close enough (F1 0.8)
        ("0.18 MPa", "0.38 MPa", False),  # a wrong number: F1 0.5
        ("四氢噻吩", "四氢噻吩", True),
        ("每年一次", "每18个月", False),
    ],
)
def test_judge_up_votes_matches_and_corrects_the_rest(answer: str, key: str, correct: bool) -> None:
    verdict = judge(answer, key)
    assert verdict.correct is correct
    assert verdict.rating == ("up" if correct else "down")
    assert verdict.corrected_answer == (None if correct else key)


def test_simulated_users_rate_served_answers_once(tmp_path: Path) -> None:
    from feilun.app.demo_data import DemoItem
    from feilun.core.protocols import GenerationParams
    from feilun.core.records import Message
    from feilun.models.tiny import build_tiny_model

    model, tokenizer = build_tiny_model(init_std=0.3)  # says varied words, not blank lines
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")

    with pytest.MonkeyPatch.context() as patch:  # the packaged SmolLM2 takes ~10 s to inspect
        patch.setattr(ModelRegistry, "ensure_packaged", lambda self: [])
        ws, _ = init_workspace(tmp_path / "ws", env={})
    try:
        ws.models.add("tiny", "safetensors", str(tmp_path / "tiny"))
        asked = DemoItem(
            "q1", "What is the MOP of the low-pressure network?", "?", "en", "users", "f1"
        )
        # the key of q1 is what the model says (greedy), so that answer is right
        local = ws.models.open("tiny")
        said = local.chat(
            [Message(role=m["role"], content=m["content"]) for m in asked.messages()],
            GenerationParams(max_tokens=24, temperature=0.0),
        ).text
        items = [
            DemoItem("q1", asked.question, said, "en", "users", "f1"),
            DemoItem("q2", "How often are meters replaced?", "every 8 years", "en", "users", "f2"),
        ]
        first = feedback_round(ws, "tiny", items, round_id="r1")
        again = feedback_round(ws, "tiny", items, round_id="r1")
        with ws.database.session(is_read_only=True) as session:
            rows = session.execute(sa.select(feedback).order_by(feedback.c.client_id)).all()
    finally:
        ws.close()
    assert [e.rating for e in first] == ["up", "down"], (said, first)
    assert tally(first) == {"asked": 2, "up": 1, "down": 1}
    assert [r.client_id for r in rows] == ["demo-r1-q1", "demo-r1-q2"]  # the repeat added none
    assert [r.rating for r in rows] == [1, -1]
    assert [r.corrected_answer for r in rows] == [None, "every 8 years"]
    assert [r.trace_id for r in rows] == [e.trace_id for e in first]
    assert again == []  # the round ran again: every item was rated already, none is asked


def test_turn_configs_name_their_files_absolutely_from_a_relative_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feilun.app.demo import TEMPLATE, _configs, _repo_file

    monkeypatch.chdir(tmp_path)
    folder = Path("feilun-workspace/demo/lanshan")  # the default workspace is relative
    folder.mkdir(parents=True)
    first, second, _ = _configs(_repo_file(TEMPLATE), folder, "lanshan", "prod", "seed@1")
    for config in (first, second):
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        suite = Path(raw["evaluate"]["suite"])
        assert suite.is_absolute() and suite.is_file(), suite  # not doubled under the folder
        assert Path(raw["train"]["recipe"]).is_file() and Path(raw["gate"]["rules"]).is_file()
