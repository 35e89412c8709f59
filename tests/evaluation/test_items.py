from __future__ import annotations

import json
from pathlib import Path

import pytest

from feilun.core.errors import BadInput
from feilun.evaluation.items import load_mc, load_qa

from .conftest import shared


def test_mmlu_csv_without_header_takes_the_subject_from_the_file_name() -> None:
    loaded = load_mc(shared("mmlu", "original", "dev", "abstract_algebra_dev.csv"))
    assert len(loaded.items) == 5 and not loaded.skipped
    first = loaded.items[0]
    assert first.subject == "abstract_algebra"
    assert first.question.startswith("Find all c in Z_3")
    assert first.choices == ("0", "1", "2", "3") and first.answer == 1  # B


def test_cmmlu_csv_with_header_and_the_jsonl_copy_agree() -> None:
    folder = shared("cmmlu", "original", "test")
    csv_items = load_mc(folder / "marketing.csv").items
    jsonl = [
        json.loads(line)
        for line in shared("cmmlu", "test_other_subjects.jsonl").read_text("utf-8").splitlines()
    ]
    expected = [r for r in jsonl if r["subject"] == "marketing"]
    assert len(csv_items) == len(expected) == 180
    for item, row in zip(csv_items, expected, strict=True):
        assert item.question == row["question"]
        assert list(item.choices) == row["choices"]
        assert item.answer == row["answer_index"]


def test_a_folder_of_csvs_is_read_subject_by_subject() -> None:
    loaded = load_mc(shared("mmlu", "original", "dev"))
    subjects = {item.subject for item in loaded.items}
    assert len(subjects) == 57 and len(loaded.items) == 280  # as SOURCE.md says


def test_malformed_rows_are_skipped_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "physics_val.csv"
    path.write_text(
        "What is 2+2?,3,4,5,6,B\n"
        "Too few columns,1,2\n"
        '"A question spanning\ntwo lines?",a,b,c,d,A\n'
        "No answer here,a,b,c,d,\n"
        "Answer out of range,a,b,c,d,F\n"
        ",a,b,c,d,A\n",
        encoding="utf-8",
    )
    loaded = load_mc(path)
    assert [i.question for i in loaded.items] == ["What is 2+2?", "A question spanning\ntwo lines?"]
    reasons = {s.line: s.reason for s in loaded.skipped}
    assert set(reasons) == {2, 5, 6, 7}  # the quoted newline makes row 3 end on line 4
    assert "columns" in reasons[2]
    assert reasons[5] == "no answer"
    assert "'F' is not one of A, B, C, D" in reasons[6]
    assert reasons[7] == "empty question"


def test_jsonl_rows_with_letters_indexes_and_problems(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [
        {"question": "Q1", "choices": ["a", "b"], "answer": "B"},
        {"question": "Q2", "choices": ["a", "b", "c"], "answer_index": 2, "subject": "s"},
        {"question": "Q3", "choices": ["a", "b"]},
        {"question": "Q4", "choices": "ab", "answer": "A"},
    ]
    path.write_text("\n".join([json.dumps(r) for r in rows] + ["{broken"]) + "\n", encoding="utf-8")
    loaded = load_mc(path)
    assert [(i.question, i.answer, i.subject) for i in loaded.items] == [
        ("Q1", 1, "items"),
        ("Q2", 2, "s"),
    ]
    reasons = {s.line: s.reason for s in loaded.skipped}
    assert "no `answer`" in reasons[3]
    assert "`choices`" in reasons[4]
    assert reasons[5].startswith("not JSON")


def test_a_file_with_no_usable_row_names_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text('{"question": "no choices"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match="no usable multiple-choice rows.*line 1"):
        load_mc(path)
    with pytest.raises(BadInput, match="does not exist"):
        load_mc(tmp_path / "missing.csv")


def test_squad_json_and_jsonl_give_the_same_cmrc_items() -> None:
    from_json = load_qa(shared("cmrc2018", "original", "cmrc2018_trial.json"))
    from_jsonl = load_qa(shared("cmrc2018", "trial.jsonl"))
    # 1002 questions upstream, two of them empty: skipped, with where they are.
    assert len(from_json.items) == len(from_jsonl.items) == 1000
    assert [(s.line, s.reason) for s in from_jsonl.skipped] == [
        (748, "no `question` text"),
        (809, "no `question` text"),
    ]
    assert [s.line for s in from_json.skipped] == [748, 809]  # the question's position
    by_id = {i.id: i for i in from_jsonl.items}
    for item in from_json.items[:50]:
        assert by_id[item.id].answers[0] == item.answers[0]
        assert by_id[item.id].context == item.context


def test_qa_rows_without_answers_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"question": "Who?", "answers": ["Ann"]}\n'
        '{"question": "What?", "answers": []}\n'
        '{"question": "Where?", "answers": {"text": ["Rome"], "answer_start": [0]}}\n',
        encoding="utf-8",
    )
    loaded = load_qa(path)
    assert [i.answers for i in loaded.items] == [("Ann",), ("Rome",)]
    assert [(s.line, s.reason) for s in loaded.skipped] == [
        (2, "no `answers` (a list of acceptable answer strings)")
    ]
