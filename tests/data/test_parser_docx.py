"""The DOCX parser on the shared Word files and on documents built here with python-docx."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import docx
import pytest
from docx.oxml.ns import qn

from feilun.core.errors import BadInput
from feilun.data.parsers import docx as docx_parser
from feilun.data.parsing import Parsed, ParseOptions, parser_for


@pytest.fixture(scope="module")
def documents() -> Path:
    """The shared real documents (read in place, never copied into the repo)."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "documents"


def parse(data: bytes) -> Parsed:
    return docx_parser.PARSER.parse(data, "test.docx", ParseOptions())


def squeeze(text: str) -> str:
    return "".join(text.split())


def save(document: Any) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def report(title: str = "Boiler Room Inspection Report") -> bytes:
    """A report with every block kind, a header and a footer, built with python-docx."""
    document = docx.Document()
    document.core_properties.title = title
    section = document.sections[0]
    section.header.paragraphs[0].text = "CONFIDENTIAL HEADER"
    section.footer.paragraphs[0].text = "Page footer text"
    document.add_heading("Inspection of boiler room B12", level=1)
    document.add_paragraph("The inspection took place on 3 March.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([("Item", "State", "Action"), ("Valve", "worn", "replace")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(2, 0).merge(table.cell(2, 1)).text = "Pressure gauge"
    table.cell(2, 2).text = "calibrate"
    document.add_paragraph("The valve is replaced within a week.")
    document.add_heading("Findings", level=2)
    document.add_paragraph("Gas smell near the meter", style="List Bullet")
    document.add_paragraph("Loose pipe bracket", style="List Bullet 2")
    document.add_paragraph("Rust on the door", style="List Bullet")
    document.add_paragraph("Close the main valve", style="List Number")
    document.add_paragraph("Call the supplier", style="List Number")
    document.add_paragraph("Closing remark.\tSigned:\u00a0K. Wang")
    return save(document)


def test_registered_as_docx() -> None:
    assert parser_for("docx") is docx_parser.PARSER


def test_body_in_order_with_headings_tables_and_lists() -> None:
    parsed = parse(report())
    assert parsed.text.split("\n\n") == [
        "# Inspection of boiler room B12",
        "The inspection took place on 3 March.",
        "Item | State | Action\nValve | worn | replace\nPressure gauge | calibrate",
        "The valve is replaced within a week.",
        "## Findings",
        "- Gas smell near the meter\n  - Loose pipe bracket\n- Rust on the door\n"
        "1. Close the main valve\n2. Call the supplier",
        "Closing remark. Signed: K. Wang",
    ]
    assert parsed.title == "Boiler Room Inspection Report"
    assert parsed.warnings == []
    assert parsed.media_type.endswith("wordprocessingml.document")
    assert parsed.pages == 0 and parsed.page_starts == []


def test_title_is_the_first_heading_without_a_core_title() -> None:
    assert parse(report(title="")).title == "Inspection of boiler room B12"


def test_content_controls_and_tracked_insertions_are_body_text() -> None:
    document = docx.Document()
    document.add_paragraph("Before the control.")
    inside = document.add_paragraph("Inside a content control.")
    document.add_paragraph("After it.")
    sdt = document.element.body.makeelement(qn("w:sdt"), {})
    content = sdt.makeelement(qn("w:sdtContent"), {})
    sdt.append(content)
    inside._p.addprevious(sdt)
    content.append(inside._p)
    run = document.paragraphs[-1]._p.r_lst[0]
    insertion = run.makeelement(qn("w:ins"), {qn("w:id"): "1", qn("w:author"): "K"})
    run.addnext(insertion)
    inserted = copy.deepcopy(run)
    inserted.t_lst[0].text = " And an insertion."
    insertion.append(inserted)
    assert parse(save(document)).text == (
        "Before the control.\n\nInside a content control.\n\nAfter it. And an insertion."
    )


def test_every_python_docx_paragraph_is_kept_in_order(documents: Path) -> None:
    for path in sorted(documents.glob("**/*.docx")):
        parsed = squeeze(parse(path.read_bytes()).text)
        position = 0
        for paragraph in docx.Document(str(path)).paragraphs:
            text = squeeze(paragraph.text)
            if not text:
                continue
            found = parsed.find(text, position)
            assert found >= 0, (path.name, text)
            position = found + len(text)


def test_shared_table_and_list_documents(documents: Path) -> None:
    table = parse((documents / "docx/fake_table.docx").read_bytes())
    assert table.text == (
        "Header Col 1 | Header Col 2\nLorem ipsum | A Link example\n\nDolor sit amet"
    )
    assert table.title == "Dolor sit amet"  # no core title, no heading: the first paragraph
    simple = parse((documents / "docx/simple.docx").read_bytes())
    assert simple.text.startswith("# These are a few of my favorite things:\n\n")
    assert "\n\n- Hockey\n\n" in simple.text
    breaks = parse((documents / "docx/page-breaks.docx").read_bytes())
    assert breaks.text.startswith("First page, tab here: followed by line-break here:\nhere:\n")


def test_chinese_probes_and_title(documents: Path) -> None:
    rows = [json.loads(line) for line in (documents / "manifest.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["format"] == "docx" and r["lang"] == "zh")
    lines = (documents / "zh_extraction_probes.jsonl").read_text(encoding="utf-8").splitlines()
    probes = [p["expected_substring"] for p in map(json.loads, lines) if p["file"] == row["file"]]
    parsed = parse((documents / row["file"]).read_bytes())
    assert len(probes) == 3
    for probe in probes:
        assert squeeze(probe) in squeeze(parsed.text)
    assert parsed.title == row["title"]
    assert parsed.text.startswith(f"# {row['title']}\n\n")


def rezip(data: bytes, replace: dict[str, bytes | None]) -> bytes:
    """The same package with some parts replaced (None: removed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename not in replace:
                target.writestr(info, source.read(info))
            elif (new := replace[info.filename]) is not None:
                target.writestr(info.filename, new)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda good: b"", "is empty"),
        (lambda good: b"%PDF-1.7 this is not a zip" * 10, "not a readable zip"),
        (lambda good: good[: len(good) // 2], "not a readable zip"),
        (lambda good: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old binary Word"),
        (lambda good: rezip(good, {"word/document.xml": None}), "without word/document.xml"),
        (lambda good: rezip(good, {"word/document.xml": b"<w:document><w:bo"}), "damaged"),
    ],
    ids=["zero-bytes", "garbage", "truncated", "doc", "no-document-xml", "broken-xml"],
)
def test_unreadable_files_are_bad_input_with_a_fix(make: Any, message: str) -> None:
    with pytest.raises(BadInput, match=message) as e:
        parse(make(report()))
    assert e.value.fix


def test_a_zip_bomb_is_refused_before_unzipping(monkeypatch: pytest.MonkeyPatch) -> None:
    good = report()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr(
            zipfile.ZipInfo("word/media/filler.bin"), bytes(4 << 20), zipfile.ZIP_DEFLATED
        )
    monkeypatch.setattr(docx_parser, "MAX_UNZIPPED_BYTES", 2 << 20)
    with pytest.raises(BadInput, match="unzips to"):
        parse(out.getvalue())
    assert parse(good).text  # without the filler it is within the limit


def test_a_document_without_text_is_bad_input() -> None:
    document = docx.Document()
    document.add_paragraph("")
    document.add_table(rows=2, cols=2)
    with pytest.raises(BadInput, match="no text in its body"):
        parse(save(document))


def test_a_custom_style_with_an_outline_level_is_a_heading() -> None:
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    style = document.styles.add_style("公司小标题", WD_STYLE_TYPE.PARAGRAPH)
    properties = style.element.get_or_add_pPr()
    properties.append(properties.makeelement(qn("w:outlineLvl"), {qn("w:val"): "1"}))
    document.add_paragraph("第一章 总则", style="公司小标题")
    document.add_paragraph("正文内容。")
    assert parse(save(document)).text == "## 第一章 总则\n\n正文内容。"
