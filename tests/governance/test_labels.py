from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError
from feilun.governance.labels import (
    FIELDS,
    label_document,
    load_or_create_key,
    make_label,
    verify_document,
    verify_label,
)

KEY = bytes(range(32))


def test_label_has_the_gb45438_fields_and_verifies() -> None:
    label = make_label("生成的回答", KEY, "feilun-demo", "answer-1")
    assert list(label) == list(FIELDS) and label["Label"] == "1"
    assert verify_label("生成的回答", label, KEY).is_valid


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda c, lab: ("生成的回答！", lab), "does not match the content"),
        (lambda c, lab: (c, {**lab, "ContentProducer": "someone-else"}), "a field was edited"),
        (lambda c, lab: (c, {**lab, "Label": "9"}), "Label='9'"),
        (lambda c, lab: (c, {k: v for k, v in lab.items() if k != "ProduceID"}), "lacks ProduceID"),
        (lambda c, lab: (c, None), "no AIGC label"),
    ],
)
def test_tampering_says_what_failed(edit, problem: str) -> None:  # type: ignore[no-untyped-def]
    content, label = edit("生成的回答", make_label("生成的回答", KEY, "feilun-demo"))
    check = verify_label(content, label, KEY)
    assert not check.is_valid and problem in check.problem


def test_another_key_does_not_verify() -> None:
    label = make_label("text", KEY, "p")
    assert "another key" in verify_label("text", label, bytes(32)).problem


def test_json_and_markdown_files_round_trip() -> None:
    labelled = label_document('{"answer": "你好", "n": 1}', ".json", KEY, "p")
    assert json.loads(labelled)["AIGC"]["ContentProducer"] == "p"
    assert verify_document(labelled, ".json", KEY).is_valid
    edited = labelled.replace("你好", "您好")
    assert "content" in verify_document(edited, ".json", KEY).problem
    md = label_document("---\ntitle: 报告\n---\n# 报告\n正文\n", ".md", KEY, "p")
    assert md.startswith("---\ntitle: 报告\nAIGC: {") and md.endswith("---\n# 报告\n正文\n")
    assert verify_document(md, ".md", KEY).is_valid
    assert not verify_document(md.replace("正文", "正文。"), ".md", KEY).is_valid
    relabelled = label_document(md, ".md", KEY, "q")
    assert relabelled.count("AIGC:") == 1 and verify_document(relabelled, ".md", KEY).is_valid
    with pytest.raises(ConfigError, match="Label='4'"):
        make_label("x", KEY, "p", label="4")


def test_key_is_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "safety" / "label.key"
    key = load_or_create_key(path)
    assert load_or_create_key(path) == key and len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_label_cli_add_then_verify_and_detect_a_tamper(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    answer = tmp_path / "answer.md"
    answer.write_text("燃气泄漏时请先关闭阀门。\n", encoding="utf-8")
    runner = CliRunner()
    args = ["--key-file", str(key)]
    added = runner.invoke(app, ["label", "add", str(answer), "--producer", "demo", *args])
    assert added.exit_code == 0, added.output
    ok = runner.invoke(app, ["label", "verify", str(answer), "--json", *args])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["is_valid"] is True
    answer.write_text(answer.read_text(encoding="utf-8").replace("关闭", "打开"), encoding="utf-8")
    bad = runner.invoke(app, ["label", "verify", str(answer), *args])
    assert bad.exit_code == 1 and "does not match the content" in bad.stderr
