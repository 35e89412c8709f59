from __future__ import annotations

import json
from pathlib import Path

import docx
import pytest
from pypdf import PdfReader, PdfWriter
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import BadInput
from feilun.governance.label_files import EXPLICIT_LABEL, label_file, verify_file

KEY = bytes(range(32))
PDFS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "pdf"


def _docx(path: Path) -> Path:
    doc = docx.Document()
    doc.core_properties.title = "燃气安全"
    doc.add_paragraph("燃气泄漏时请先关闭阀门。")
    table = doc.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "步骤", "开窗通风"
    doc.save(str(path))
    return path


def _pdf(path: Path, fixture: str = "pdflatex-4-pages.pdf") -> Path:
    path.write_bytes((PDFS / fixture).read_bytes())
    return path


def _set_docx_label(path: Path, **fields: str) -> None:
    doc = docx.Document(str(path))
    label = json.loads(doc.core_properties.comments)
    doc.core_properties.comments = json.dumps({**label, **fields}, ensure_ascii=False)
    doc.save(str(path))


def test_docx_round_trip_with_explicit_label(tmp_path: Path) -> None:
    path = label_file(_docx(tmp_path / "a.docx"), KEY, "gas-assistant", explicit=EXPLICIT_LABEL)
    doc = docx.Document(str(path))
    assert json.loads(doc.core_properties.comments)["ContentProducer"] == "gas-assistant"
    assert doc.core_properties.title == "燃气安全"
    assert doc.paragraphs[-1].text == EXPLICIT_LABEL
    assert verify_file(path, KEY).is_valid
    label_file(path, KEY, "gas-assistant", explicit=EXPLICIT_LABEL)  # relabelling: one line
    assert [p.text for p in docx.Document(str(path)).paragraphs].count(EXPLICIT_LABEL) == 1
    assert verify_file(path, KEY).is_valid


@pytest.mark.parametrize("where", ["paragraph", "table"])
def test_docx_body_edit_fails_naming_the_content(tmp_path: Path, where: str) -> None:
    path = label_file(_docx(tmp_path / "a.docx"), KEY, "p")
    doc = docx.Document(str(path))
    if where == "paragraph":
        doc.paragraphs[0].text = "燃气泄漏时请先打开阀门。"
    else:
        doc.tables[0].cell(0, 1).text = "关窗"
    doc.save(str(path))
    check = verify_file(path, KEY)
    assert not check.is_valid and "does not match the content" in check.problem


def test_docx_field_edit_and_missing_label(tmp_path: Path) -> None:
    path = label_file(_docx(tmp_path / "a.docx"), KEY, "p")
    _set_docx_label(path, ContentProducer="someone-else")
    problem = verify_file(path, KEY).problem
    assert "ContentProducer" in problem and "a field was edited" in problem
    assert verify_file(_docx(tmp_path / "b.docx"), KEY).problem == "no AIGC label"


def test_pdf_round_trip_keeps_metadata(tmp_path: Path) -> None:
    path = label_file(_pdf(tmp_path / "a.pdf"), KEY, "p", out=tmp_path / "out.pdf")
    assert path == tmp_path / "out.pdf"
    meta = PdfReader(path).metadata
    assert meta is not None and str(meta["/Producer"]) == "pdfTeX-1.40.23"
    assert json.loads(str(meta["/AIGC"]))["ContentProducer"] == "p"
    assert verify_file(path, KEY).is_valid
    assert verify_file(tmp_path / "a.pdf", KEY).problem == "no AIGC label"


def test_pdf_content_and_field_edits_fail(tmp_path: Path) -> None:
    path = label_file(_pdf(tmp_path / "a.pdf"), KEY, "p")
    reader = PdfReader(path)
    assert reader.metadata is not None
    label = json.loads(str(reader.metadata["/AIGC"]))
    cut = PdfWriter(clone_from=reader)
    cut.remove_page(3)  # one page fewer, the label kept as it was
    cut.write(tmp_path / "cut.pdf")
    assert "does not match the content" in verify_file(tmp_path / "cut.pdf", KEY).problem
    edited = PdfWriter(clone_from=reader)
    edited.add_metadata({"/AIGC": json.dumps({**label, "Label": "2"})})
    edited.write(tmp_path / "edited.pdf")
    assert "a field was edited" in verify_file(tmp_path / "edited.pdf", KEY).problem


def test_unsupported_suffix_lists_the_supported(tmp_path: Path) -> None:
    path = tmp_path / "answer.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(BadInput, match=r"\.json, \.md, \.docx, \.pdf"):
        label_file(path, KEY, "p")
    result = CliRunner().invoke(app, ["label", "verify", str(path), "--key-file", "k"])
    assert isinstance(result.exception, BadInput) and "'.txt'" in str(result.exception)


@pytest.mark.parametrize(("name", "data"), [("bad.docx", b"PK\x03\x04junk"), ("bad.pdf", b"%PDF")])
def test_failed_labelling_leaves_the_original(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BadInput, match="not a readable"):
        label_file(path, KEY, "p")
    assert path.read_bytes() == data and [p.name for p in tmp_path.iterdir()] == [name]


def test_cli_explicit_markdown_and_pdf(tmp_path: Path) -> None:
    runner = CliRunner()
    key = ["--key-file", str(tmp_path / "k.key")]
    md = tmp_path / "answer.md"
    md.write_text("# 提示\n\n请关闭阀门。\n", encoding="utf-8")
    added = runner.invoke(app, ["label", "add", str(md), "--producer", "p", "--explicit", *key])
    assert added.exit_code == 0, added.output
    assert md.read_text(encoding="utf-8").endswith(f"请关闭阀门。\n\n{EXPLICIT_LABEL}\n")
    assert runner.invoke(app, ["label", "verify", str(md), *key]).exit_code == 0
    pdf = _pdf(tmp_path / "a.pdf", "minimal-document.pdf")
    args = ["label", "add", str(pdf), "--producer", "p", "--explicit", *key]
    added = runner.invoke(app, args)
    assert added.exit_code == 0 and "no visible label" in added.stderr
    ok = runner.invoke(app, ["label", "verify", str(pdf), "--json", *key])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["label"]["ContentProducer"] == "p"


def test_chat_prints_the_explicit_label_after_the_answer(tiny_workspace: Path) -> None:
    runner = CliRunner()
    env = {"FEILUN_WORKSPACE": str(tiny_workspace)}
    chat = runner.invoke(app, ["chat", "tiny", "Hello", "--max-tokens", "5"], env=env)
    assert chat.exit_code == 0 and chat.stdout.endswith(f"\n{EXPLICIT_LABEL}\n")
    as_json = runner.invoke(app, ["chat", "tiny", "Hello", "--max-tokens", "5", "--json"], env=env)
    assert EXPLICIT_LABEL not in as_json.stdout
