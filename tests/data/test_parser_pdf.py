"""The PDF parser on the shared real PDFs and on bad inputs generated here (pypdf's writer)."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    NumberObject,
    StreamObject,
)

from feilun.core.errors import BadInput
from feilun.data.parsers import pdf
from feilun.data.parsing import Parsed, ParseOptions, parser_for

PASSWORD = "openpassword"


@pytest.fixture(scope="module")
def documents() -> Path:
    """The shared real documents (read in place, never copied into the repo)."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "documents"


def parse(data: bytes, **options: Any) -> Parsed:
    return pdf.PARSER.parse(data, "test.pdf", ParseOptions(**options))


def squeeze(text: str) -> str:
    return "".join(text.split())


# -- generated PDFs ----------------------------------------------------------------------------


def font_latin() -> DictionaryObject:
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )


def font_chinese() -> DictionaryObject:
    """Adobe's non-embedded STSong-Light with the Unicode CMap, as reportlab writes it."""
    info = {"/Registry": "Adobe", "/Ordering": "GB1"}
    descendant = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/CIDFontType0"),
            NameObject("/BaseFont"): NameObject("/STSong-Light"),
            NameObject("/DW"): NumberObject(1000),
            NameObject("/CIDSystemInfo"): DictionaryObject(
                {NameObject(k): pdf_string(v) for k, v in info.items()}
                | {NameObject("/Supplement"): NumberObject(2)}
            ),
        }
    )
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type0"),
            NameObject("/BaseFont"): NameObject("/STSong-Light"),
            NameObject("/Encoding"): NameObject("/UniGB-UCS2-H"),
            NameObject("/DescendantFonts"): ArrayObject([descendant]),
        }
    )


def pdf_string(value: str) -> Any:
    from pypdf.generic import TextStringObject

    return TextStringObject(value)


def show(x: float, y: float, text: str, size: int = 10) -> str:
    """One positioned line: Helvetica for ASCII, STSong (UCS-2 hex) for anything else."""
    if text.isascii():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return f"BT /F1 {size} Tf {x} {y} Td ({escaped}) Tj ET"
    return f"BT /F2 {size} Tf {x} {y} Td <{text.encode('utf-16-be').hex()}> Tj ET"


def make_pdf(pages: list[list[str]], *, image_pages: frozenset[int] = frozenset()) -> bytes:
    """A PDF whose page i draws the operators pages[i] (and a 1x1 image if i in image_pages)."""
    writer = PdfWriter()
    fonts = DictionaryObject(
        {
            NameObject("/F1"): writer._add_object(font_latin()),
            NameObject("/F2"): writer._add_object(font_chinese()),
        }
    )
    for i, operators in enumerate(pages):
        page = writer.add_blank_page(612, 792)
        resources = DictionaryObject({NameObject("/Font"): fonts})
        if i in image_pages:
            image = DecodedStreamObject()
            image.set_data(b"\x80")
            image.update(
                {
                    NameObject("/Type"): NameObject("/XObject"),
                    NameObject("/Subtype"): NameObject("/Image"),
                    NameObject("/Width"): NumberObject(1),
                    NameObject("/Height"): NumberObject(1),
                    NameObject("/ColorSpace"): NameObject("/DeviceGray"),
                    NameObject("/BitsPerComponent"): NumberObject(8),
                }
            )
            resources[NameObject("/XObject")] = DictionaryObject(
                {NameObject("/Im1"): writer._add_object(image)}
            )
            operators = [*operators, "q 612 0 0 792 0 0 cm /Im1 Do Q"]
        page[NameObject("/Resources")] = resources
        content = DecodedStreamObject()
        content.set_data("\n".join(operators).encode())
        page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def two_columns(left: list[str], right: list[str], *, interleave: bool) -> list[str]:
    """Two columns at x=72 and x=320, 14 pt apart; row by row or column by column."""
    rows = list(enumerate(zip(left, right, strict=True)))
    if interleave:
        return [
            op
            for i, (a, b) in rows
            for op in (show(72, 700 - 14 * i, a), show(320, 700 - 14 * i, b))
        ]
    return [show(72, 700 - 14 * i, a) for i, (a, _) in rows] + [
        show(320, 700 - 14 * i, b) for i, (_, b) in rows
    ]


LEFT = [f"Left column line {i} of the first article" for i in range(1, 9)]
RIGHT = [f"Right column line {i} of the next story" for i in range(1, 9)]


def encrypted(source: Path, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=str(source))
    writer.encrypt(
        user_password=user_password, owner_password="owner-" + PASSWORD, algorithm="AES-256"
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def flate_bomb(decompressed_mib: int) -> bytes:
    """A FlateDecode content stream: one line of text, then `decompressed_mib` MiB of comments.

    After a full flush deflate forgets its history, so one compressed MiB repeated is a valid
    stream: a ~1 KB block per MiB, a few MB of file for gigabytes of output.
    """
    head = zlib.compressobj(9)
    start = head.compress(b"BT /F1 12 Tf 72 720 Td (Hello bomb) Tj ET\n")
    start += head.flush(zlib.Z_FULL_FLUSH)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw.compress(b"%" + b"x" * ((1 << 20) - 2) + b"\n") + raw.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    return start + block * decompressed_mib + end.compress(b"") + end.flush() + bytes(4)


def pdf_with_streams(streams: list[bytes]) -> bytes:
    """One page per already-compressed FlateDecode content stream."""
    writer = PdfWriter()
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font_latin())})
    for compressed in streams:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        stream = StreamObject()
        stream._data = compressed
        stream[NameObject("/Filter")] = NameObject("/FlateDecode")
        page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- the shared real PDFs ----------------------------------------------------------------------


def shared_pdfs(documents: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (documents / "manifest.jsonl").read_text().splitlines()]
    return [row for row in rows if row["format"] == "pdf"]


def test_registered_as_pdf() -> None:
    assert parser_for("pdf") is pdf.PARSER


def test_page_counts_offsets_and_titles_of_the_shared_pdfs(documents: Path) -> None:
    rows = shared_pdfs(documents)
    assert len(rows) >= 4
    for row in rows:
        data = (documents / row["file"]).read_bytes()
        parsed = parse(data)
        assert parsed.media_type == "application/pdf"
        assert parsed.pages == row["pages"], row["file"]
        assert len(parsed.page_starts) == row["pages"]
        assert parsed.page_starts[0] == 0
        assert parsed.page_starts == sorted(parsed.page_starts)
        if "title" in row:
            assert parsed.title == row["title"]
        assert parsed.title and parsed.title in parsed.text[:300]
        # Every page's text is where page_starts says, as plain pypdf reads that page.
        reader = PdfReader(io.BytesIO(data))
        ends = [*parsed.page_starts[1:], len(parsed.text)]
        for i, (start, end) in enumerate(zip(parsed.page_starts, ends, strict=True)):
            assert squeeze(parsed.text[start:end]) == squeeze(reader.pages[i].extract_text())


def test_chinese_probes_come_out_of_the_pdf_on_their_page(documents: Path) -> None:
    lines = (documents / "zh_extraction_probes.jsonl").read_text(encoding="utf-8").splitlines()
    probes = [p for p in map(json.loads, lines) if p["file"].endswith(".pdf")]
    assert len(probes) == 3
    parsed = parse((documents / probes[0]["file"]).read_bytes())
    pages = [
        squeeze(parsed.text[start:end])
        for start, end in zip(
            parsed.page_starts, [*parsed.page_starts[1:], len(parsed.text)], strict=True
        )
    ]
    for probe in probes:
        assert squeeze(probe["expected_substring"]) in squeeze(parsed.text)
    # The first article is on page 1, the last one on the last page.
    assert squeeze(probes[0]["expected_substring"]) in pages[0]
    assert squeeze(probes[-1]["expected_substring"]) in pages[-1]


def test_title_falls_back_to_the_first_line_without_metadata(documents: Path) -> None:
    parsed = parse((documents / "pdf/minimal-document.pdf").read_bytes())
    assert parsed.title.startswith("Lorem ipsum dolor sit amet")


# -- reading order -----------------------------------------------------------------------------


def test_pypdf_interleaves_a_two_column_page_written_row_by_row() -> None:
    # Why the parser orders columns itself: both pypdf modes read this page across the gutter.
    reader = PdfReader(io.BytesIO(make_pdf([two_columns(LEFT, RIGHT, interleave=True)])))
    for mode in ("plain", "layout"):
        lines = reader.pages[0].extract_text(extraction_mode=mode).splitlines()
        assert "Left column line 1" in lines[0] and "Right column line 1" in lines[0], mode


@pytest.mark.parametrize("interleave", [True, False])
def test_two_columns_come_out_left_then_right(interleave: bool) -> None:
    parsed = parse(make_pdf([two_columns(LEFT, RIGHT, interleave=interleave)]))
    assert parsed.text.splitlines() == LEFT + RIGHT


def test_two_columns_with_a_title_across_and_a_centred_page_number() -> None:
    title = show(200, 740, "A Title Across Both Columns Of The Page", size=14)
    number = show(303, 60, "7")
    parsed = parse(make_pdf([[title, *two_columns(LEFT, RIGHT, interleave=True), number]]))
    assert parsed.text.splitlines() == [
        "A Title Across Both Columns Of The Page",
        *LEFT,
        *RIGHT,
        "7",
    ]
    assert parsed.title == "A Title Across Both Columns Of The Page"


def test_turned_text_keeps_its_place_and_a_turned_page_keeps_pypdf_order() -> None:
    stamp = "BT /F1 10 Tf 0 1 -1 0 30 300 Tm (arXiv stamp) Tj ET"  # up the left margin
    parsed = parse(make_pdf([[stamp, *two_columns(LEFT, RIGHT, interleave=True)]]))
    assert parsed.text.splitlines() == ["arXiv stamp", *LEFT, *RIGHT]
    # The same page drawn turned a quarter (as some landscape printers do): left as pypdf reads it.
    turned = ["q 0 1 -1 0 612 0 cm", *two_columns(LEFT, RIGHT, interleave=True), "Q"]
    data = make_pdf([turned])
    assert parse(data).text == PdfReader(io.BytesIO(data)).pages[0].extract_text().strip()


def test_chinese_two_columns_in_reading_order() -> None:
    left = [f"第{i}条左栏的规定内容在这里继续写下去" for i in "一二三四五六"]
    right = [f"右栏第{i}款的说明文字也要保持顺序" for i in "一二三四五六"]
    parsed = parse(make_pdf([two_columns(left, right, interleave=True)]))
    assert squeeze(parsed.text) == squeeze("".join(left + right))


def test_three_columns_with_their_own_baselines_sorted_by_height() -> None:
    # A producer that writes runs top to bottom across the page, whatever their column.
    columns = [[f"Column {c} line {i} reads on and on" for i in range(10)] for c in range(3)]
    runs = [
        (700 - (13 + c) * i, 72 + 170 * c, line)
        for c, column in enumerate(columns)
        for i, line in enumerate(column)
    ]
    operators = [
        show(x, y, line, size=9) for y, x, line in sorted(runs, key=lambda r: (-r[0], r[1]))
    ]
    parsed = parse(make_pdf([operators]))
    assert parsed.text.splitlines() == [line for column in columns for line in column]


def test_labels_and_values_of_a_form_are_not_split_into_columns() -> None:
    rows = [("Name:", "Alice Smith"), ("City:", "Shanghai"), ("Phone:", "555"), ("Job:", "x")]
    operators = [
        op
        for i, (k, v) in enumerate(rows)
        for op in (show(72, 700 - 14 * i, k), show(320, 700 - 14 * i, v))
    ]
    parsed = parse(make_pdf([operators * 1]))
    assert parsed.text.splitlines()[0].split() == ["Name:", "Alice", "Smith"]


# -- pages without text ------------------------------------------------------------------------


def test_a_scanned_page_is_a_warning_and_a_blank_page_is_named() -> None:
    data = make_pdf(
        [[show(72, 700, "Page one text")], [], [show(72, 700, "Page three")]],
        image_pages=frozenset({1}),
    )
    parsed = parse(data)
    assert parsed.pages == 3
    assert "page 2 has no text layer; OCR it first" in parsed.warnings
    assert parsed.text[parsed.page_starts[2] :] == "Page three"
    blank = parse(make_pdf([[show(72, 700, "Only text")], []]))
    assert blank.warnings == ["page 2 is blank"]


def test_a_pdf_without_any_text_is_bad_input() -> None:
    with pytest.raises(BadInput, match="no text layer on any of its 2 pages") as e:
        parse(make_pdf([[], []], image_pages=frozenset({0, 1})))
    assert e.value.fix and "OCR" in e.value.fix


# -- bad inputs --------------------------------------------------------------------------------


def test_encrypted_pdf_needs_its_password(documents: Path) -> None:
    source = documents / "pdf/minimal-document.pdf"
    data = encrypted(source, PASSWORD)
    with pytest.raises(BadInput, match="encrypted with a password") as e:
        parse(data)
    assert e.value.fix and "--password" in e.value.fix
    with pytest.raises(BadInput, match="password given does not open it"):
        parse(data, password="wrong")
    opened = parse(data, password=PASSWORD)
    assert opened.text == parse(source.read_bytes()).text
    # The owner password opens it too, and an empty user password needs none.
    assert parse(data, password="owner-" + PASSWORD).text == opened.text
    assert parse(encrypted(source, "")).text == opened.text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda good: b"", "is empty"),
        (lambda good: b"PK\x03\x04 this is a zip file" * 20, "is not a PDF"),
        (lambda good: good[: len(good) // 2], "is truncated"),
        (lambda good: good.replace(b"/Root", b"/Rxxx").replace(b" obj", b" jbo"), "damaged PDF"),
    ],
    ids=["zero-bytes", "not-a-pdf", "truncated", "corrupt"],
)
def test_unreadable_files_are_bad_input_with_a_fix(
    documents: Path, make: Any, message: str
) -> None:
    good = (documents / "pdf/pdflatex-4-pages.pdf").read_bytes()
    with pytest.raises(BadInput, match=message) as e:
        parse(make(good))
    assert e.value.fix


def test_damage_pypdf_repairs_is_a_warning(documents: Path) -> None:
    good = (documents / "pdf/pdflatex-4-pages.pdf").read_bytes()
    match = re.search(rb"startxref\s+(\d+)", good)
    assert match
    parsed = parse(good[: match.start(1)] + b"999" + good[match.end(1) :])
    assert parsed.pages == 4
    assert any("startxref" in w for w in parsed.warnings)


def test_too_many_pages_is_bad_input(documents: Path) -> None:
    data = (documents / "pdf/pdflatex-4-pages.pdf").read_bytes()
    assert parse(data, max_pages=4).pages == 4
    with pytest.raises(BadInput, match="has 4 pages, over the limit of 3"):
        parse(data, max_pages=3)


def test_a_stream_inflating_to_gigabytes_is_bad_input_in_bounded_memory() -> None:
    data = pdf_with_streams([flate_bomb(2048)])  # 2 GiB of content in ~2 MB of file
    assert len(data) < 3 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match="decompresses to more than"):
            parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * pdf.MAX_STREAM_BYTES


def test_pages_inflating_past_the_document_budget_are_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdf, "MAX_DOCUMENT_BYTES", 3 << 20)
    fine = parse(pdf_with_streams([flate_bomb(1)] * 2))  # 2 MiB in all: within budget
    assert fine.pages == 2 and fine.text.count("Hello bomb") == 2
    with pytest.raises(BadInput, match="by page 3"):
        parse(pdf_with_streams([flate_bomb(1)] * 6))
