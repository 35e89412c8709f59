"""sniff_type on the shared real documents, on files whose name lies, and on types we refuse."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

from feilun.core.errors import BadInput
from feilun.data.sniff import sniff_type, supported_types

DOCUMENTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "documents"
SUPPORTED = "csv, docx, html, jsonl, markdown, pdf, text, zip"


def shared(relative: str) -> bytes:
    return (DOCUMENTS / relative).read_bytes()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("pdf/pdflatex-4-pages.pdf", "pdf"),
        ("zh/shanghai-smoking-control-regulation.pdf", "pdf"),
        ("docx/simple.docx", "docx"),
        ("zh/shanghai-smoking-control-regulation.docx", "docx"),
        ("html/fake-html-with-footer-and-header.html", "html"),
        ("zh/shanghai-smoking-control-regulation.html", "html"),
        ("zh/shanghai-smoking-control-regulation.md", "markdown"),
        ("zh_extraction_probes.jsonl", "jsonl"),
    ],
)
def test_real_documents(relative: str, expected: str) -> None:
    assert sniff_type(Path(relative).name, shared(relative)) == expected


@pytest.mark.parametrize(
    ("name", "relative", "expected"),
    [
        ("annual-report.pdf", "html/fake-html-with-footer-and-header.html", "html"),  # error page
        ("notes.docx", "zh/shanghai-smoking-control-regulation.pdf", "pdf"),
        ("scan.txt", "zh/shanghai-smoking-control-regulation.pdf", "pdf"),
        ("archive.zip", "docx/simple.docx", "docx"),
        ("page.md", "zh/shanghai-smoking-control-regulation.html", "html"),
    ],
)
def test_content_wins_over_the_extension(name: str, relative: str, expected: str) -> None:
    assert sniff_type(name, shared(relative)) == expected


def test_html_saved_as_utf16_with_a_bom_is_html() -> None:
    page = shared("zh/shanghai-smoking-control-regulation.html").decode("utf-8")
    assert sniff_type("page.txt", page.encode("utf-16")) == "html"


def test_plain_zip_and_text_types_by_extension() -> None:
    assert sniff_type("docs.zip", zip_of({"a.txt": b"a"})) == "zip"
    text = "第一条 为了加强管理".encode("gbk")
    for name, expected in [
        ("a.txt", "text"),
        ("a.md", "markdown"),
        ("a.csv", "csv"),
        ("a.tsv", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.json", "jsonl"),
        ("a.HTM", "html"),
        ("README", "text"),  # no extension, but text
        ("notes.rst", "text"),
    ]:
        assert sniff_type(name, text) == expected, name


def test_damaged_zip_goes_to_the_parser_its_name_names() -> None:
    docx = shared("docx/simple.docx")
    assert sniff_type("cut.docx", docx[: len(docx) // 2]) == "docx"
    assert sniff_type("cut.zip", docx[: len(docx) // 2]) == "zip"


def refusal(name: str, data: bytes) -> BadInput:
    with pytest.raises(BadInput) as caught:
        sniff_type(name, data)
    assert caught.value.message.endswith(
        f"which Feilun cannot ingest; supported types: {SUPPORTED}"
    )
    assert caught.value.fix
    return caught.value


def test_images_and_executables_are_refused_naming_the_type() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
    assert "photo.txt is a PNG image" in refusal("photo.txt", png).message
    assert "OCR" in (refusal("photo.png", png).fix or "")
    assert "a JPEG image" in refusal("x.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00").message
    elf = Path(sys.executable).resolve().read_bytes()[:4096]  # a real executable
    assert "an ELF executable" in refusal("tool", elf).message
    pe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(50)
    assert "a Windows executable" in refusal("setup.exe", pe).message


def test_office_files_other_than_docx_are_refused() -> None:
    xlsx = zip_of({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
    assert "an Excel workbook" in refusal("book.xlsx", xlsx).message
    pptx = zip_of({"[Content_Types].xml": b"<Types/>", "ppt/presentation.xml": b"<p/>"})
    assert "a PowerPoint deck" in refusal("deck.pptx", pptx).message
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)  # .doc, .xls, or an encrypted .docx
    assert "legacy or password-protected Office file" in refusal("old.doc", ole).message
    assert "an RTF document" in refusal("memo.doc", b"{\\rtf1\\ansi hello}").message
    assert "an Excel workbook" in refusal("empty.xlsx", b"not really").message


def test_other_archives_and_unknown_binaries_are_refused() -> None:
    import gzip

    archive = refusal("logs.txt.gz", gzip.compress(b"log line\n" * 10))
    assert "a gzip archive" in archive.message and ".zip" in (archive.fix or "")
    assert "binary data of an unknown type" in refusal("blob.bin", bytes(range(256)) * 4).message
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>'
    assert "an SVG image" in refusal("chart.xml", svg).message


def test_empty_file_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"empty\.pdf is empty \(0 bytes\)"):
        sniff_type("empty.pdf", b"")


def test_supported_types_are_the_registered_parsers_and_zip() -> None:
    assert ", ".join(supported_types()) == SUPPORTED
