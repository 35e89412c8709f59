"""Verification names what changed (content or a signed field); row files carry row labels."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import BadInput
from feilun.governance.label_files import (
    is_generated_row,
    label_file,
    label_rows_file,
    verify_file,
)
from feilun.governance.labels import SIGNED_FIELDS, make_label, signed_text, verify_label

KEY = bytes(range(32))
TEXT = "燃气泄漏时请先关闭阀门，再开窗通风。"


@pytest.mark.parametrize("field", SIGNED_FIELDS)
def test_an_edited_field_is_named(field: str) -> None:
    label = make_label(TEXT, KEY, "gas-assistant", "answer-1")
    edited = {**label, field: "2" if field == "Label" else "someone-else"}
    check = verify_label(TEXT, edited, KEY)
    assert not check.is_valid and check.changed == (field,)
    assert check.problem.startswith(f"{field} changed:")


def test_an_edited_content_is_named_and_both_together() -> None:
    label = make_label(TEXT, KEY, "gas-assistant", "answer-1")
    check = verify_label(TEXT + "!", label, KEY)
    assert check.changed == ("content",) and check.problem.startswith("content changed:")
    both = verify_label(TEXT + "!", {**label, "ProduceID": "x"}, KEY)
    assert both.changed == ("content", "ProduceID")
    assert both.problem.startswith("ProduceID changed (and the content)")


def test_another_key_fails_every_part() -> None:
    check = verify_label(TEXT, make_label(TEXT, KEY, "p"), bytes(32))
    assert check.changed == ("content", *SIGNED_FIELDS) and "another key" in check.problem


def _first_format(content: str, key: bytes, producer: str) -> dict[str, str]:
    """A label as Feilun signed it before per-field MACs: `<content mac>.<fields mac>`."""

    def mac(message: bytes) -> str:
        digest = hmac.new(key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    label = {"Label": "1", "ContentProducer": producer, "ProduceID": "old-1"}
    fields = json.dumps([label[f] for f in SIGNED_FIELDS], ensure_ascii=False).encode()
    empty = {"ContentPropagator": "", "PropagateID": "", "ReservedCode2": ""}
    return label | {"ReservedCode1": f"{mac(content.encode())}.{mac(fields)}"} | empty


def test_labels_of_the_first_format_still_verify() -> None:
    old = _first_format(TEXT, KEY, "gas-assistant")
    assert verify_label(TEXT, old, KEY).is_valid
    assert verify_label(TEXT + "!", old, KEY).changed == ("content",)
    edited = verify_label(TEXT, {**old, "ContentProducer": "x"}, KEY)
    assert edited.changed == ("fields",) and "a field was edited" in edited.problem


def test_a_malformed_signature_says_so() -> None:
    label = {**make_label(TEXT, KEY, "p"), "ReservedCode1": "abc"}
    assert "malformed" in verify_label(TEXT, label, KEY).problem


ROWS = [
    {
        "id": "qa_1",
        "messages": [{"role": "assistant", "content": "关阀门"}],
        "meta": {"model": "m"},
    },
    {"id": "doc_1", "text": "人写的手册", "meta": {"source_id": "s"}},
]


def _jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), "utf-8")
    return path


def test_jsonl_labels_generated_rows_only_and_names_the_row(tmp_path: Path) -> None:
    path = label_file(_jsonl(tmp_path / "d.jsonl"), KEY, "p", is_generated=is_generated_row)
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert rows[0]["AIGC"]["ProduceID"] == "qa_1" and "AIGC" not in rows[1]
    assert verify_file(path, KEY).is_valid
    rows[0]["messages"][0]["content"] = "开阀门"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    check = verify_file(path, KEY)
    assert check.problem.startswith("row 1 (id qa_1): content changed")
    rows[0]["messages"][0]["content"] = "关阀门"
    rows[0]["AIGC"]["ContentProducer"] = "other"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert verify_file(path, KEY).problem.startswith("row 1 (id qa_1): ContentProducer changed")


def test_parquet_rows_carry_a_label_column(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    label_file(path, KEY, "p", is_generated=is_generated_row)
    table = pq.read_table(path)
    labels = table.column("AIGC").to_pylist()
    assert json.loads(labels[0])["ProduceID"] == "qa_1" and labels[1] is None
    assert verify_file(path, KEY).is_valid
    rows = table.to_pylist()
    rows[1]["text"] = "改过的手册"  # a human row: not labelled, not checked
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert verify_file(path, KEY).is_valid
    rows[0]["AIGC"] = json.dumps({**json.loads(labels[0]), "Label": "2"})
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert verify_file(path, KEY).problem.startswith("row 1 (id qa_1): Label changed")


def test_a_file_without_generated_rows_has_no_label(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[1]) + "\n", "utf-8")
    label_file(path, KEY, "p", is_generated=is_generated_row)
    assert verify_file(path, KEY).problem == "no AIGC label (no row carries one)"


def test_cli_verify_names_the_field(tmp_path: Path) -> None:
    key = ["--key-file", str(tmp_path / "k.key")]
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"answer": TEXT}, ensure_ascii=False), "utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["label", "add", str(answer), "--producer", "p", *key]).exit_code == 0
    value = json.loads(answer.read_text("utf-8"))
    value["AIGC"]["ProduceID"] = "forged"
    answer.write_text(json.dumps(value, ensure_ascii=False), "utf-8")
    bad = runner.invoke(app, ["label", "verify", str(answer), "--json", *key])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["changed"] == ["ProduceID"]
    assert json.loads(bad.stdout)["problem"].startswith("ProduceID changed")


@pytest.mark.parametrize(
    ("meta", "extra", "is_generated"),
    [
        ({"writer": "model", "model": "smollm2"}, {}, True),
        ({"writer": "rules", "model": None}, {}, False),
        ({"source": "feedback", "kind": "upvote", "models": ["tiny"]}, {}, True),
        ({"source": "feedback", "kind": "correction", "models": ["tiny"]}, {}, False),
        ({"source": "feedback", "kind": "correction", "models": ["tiny"]}, {"rejected": "x"}, True),
        ({"source_id": "doc"}, {}, False),
    ],
)
def test_which_rows_are_generated(
    meta: dict[str, object], extra: dict[str, str], is_generated: bool
) -> None:
    assert is_generated_row({"id": "r", "meta": meta, **extra}) is is_generated


def test_a_stripped_label_of_a_generated_row_fails_verify(tmp_path: Path) -> None:
    path = label_file(_jsonl(tmp_path / "d.jsonl"), KEY, "p", is_generated=is_generated_row)
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    extra = {"id": "qa_2", "messages": rows[0]["messages"], "meta": {"model": "m"}}
    extra["AIGC"] = make_label(signed_text(extra), KEY, "p", "qa_2")
    del rows[0]["AIGC"]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*rows, extra]))
    check = verify_file(path, KEY)
    assert not check.is_valid
    assert check.problem == "row 1 (id qa_1) is model-written but carries no AIGC label"


def test_parquet_meta_written_as_json_text_still_marks_generated_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    as_text = [row | {"meta": json.dumps(row["meta"])} for row in ROWS]  # mixed-type exports
    pq.write_table(pa.Table.from_pylist(as_text), path)
    label_file(path, KEY, "p", is_generated=is_generated_row)
    labels = pq.read_table(path).column("AIGC").to_pylist()
    assert json.loads(labels[0])["ProduceID"] == "qa_1" and labels[1] is None
    assert verify_file(path, KEY).is_valid
    assert not is_generated_row({"id": "r", "meta": "not JSON"})


def test_label_rows_file_counts_the_rows_it_labels(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl")
    assert label_rows_file(path, KEY, "p", is_generated_row) == 1
    assert label_rows_file(path, KEY, "p", lambda _: True) == 2
    assert verify_file(path, KEY).label == {"rows_labelled": "2", "rows": "2"}
    (tmp_path / "a.md").write_text("# a", "utf-8")
    with pytest.raises(BadInput, match="a.md is not a row file"):
        label_rows_file(tmp_path / "a.md", KEY, "p", is_generated_row)
