"""The HTML parser on the shared pages and on pages written here (encodings, boilerplate)."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import pytest

from feilun.core.errors import BadInput
from feilun.data.parsers import html
from feilun.data.parsing import Parsed, ParseOptions, parser_for


@pytest.fixture(scope="module")
def documents() -> Path:
    """The shared real documents (read in place, never copied into the repo)."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "documents"


def parse(data: bytes | str) -> Parsed:
    raw = data.encode() if isinstance(data, str) else data
    return html.PARSER.parse(raw, "page.html", ParseOptions())


def squeeze(text: str) -> str:
    return "".join(text.split())


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Gas Safety Notice | City Utility</title>
<style>body { font: 12px sans-serif }</style>
<script>var tracker = "SCRIPT-TEXT";</script></head>
<body>
<div id="cookie-banner" class="cookie-consent">We use cookies. Accept all cookies?</div>
<header><a href="/">Home</a> SITE-HEADER <nav><a href="/about">About us</a> NAV-TEXT</nav></header>
<main><article>
<header><h1>Annual gas safety inspection</h1></header>
<p>All household gas meters will be inspected between March and May. Inspectors carry a photo
ID card issued by the utility.</p>
<p>If you smell gas, leave the building immediately and call the emergency line from outside.</p>
<h2>What to prepare</h2>
<ul><li>Clear access to the meter</li><li>Your latest bill</li></ul>
<table><tr><th>District</th><th>Month</th></tr><tr><td>North</td><td>March</td></tr></table>
<p>Questions about the inspection can be sent to the customer service centre at any time.</p>
<p hidden>HIDDEN-TEXT</p><div style="display: none">INVISIBLE-TEXT</div>
</article></main>
<aside>ASIDE-TEXT <a href="/x">Other news</a></aside>
<footer>SITE-FOOTER © 2024 City Utility. <a href="/privacy">Privacy</a></footer>
</body></html>"""


def test_registered_as_html() -> None:
    assert parser_for("html") is html.PARSER


def test_main_content_without_boilerplate(documents: Path) -> None:
    parsed = parse(PAGE)
    assert parsed.media_type == "text/html"
    assert parsed.title == "Gas Safety Notice | City Utility"
    for furniture in ("SCRIPT", "SITE-HEADER", "NAV-TEXT", "cookies", "ASIDE", "SITE-FOOTER"):
        assert furniture not in parsed.text
    assert "HIDDEN" not in parsed.text and "INVISIBLE" not in parsed.text
    blocks = parsed.text.split("\n\n")
    # The article's own header is content; paragraph breaks, headings, list and table are kept.
    assert blocks[0] == "# Annual gas safety inspection"
    assert blocks[1].startswith("All household gas meters") and blocks[1].endswith("utility.")
    assert blocks[2].startswith("If you smell gas")
    assert "## What to prepare" in blocks
    assert "- Clear access to the meter\n- Your latest bill" in blocks
    assert "North" in parsed.text and "March" in parsed.text
    assert blocks[-1].startswith("Questions about the inspection")


def test_shared_page_with_header_and_footer(documents: Path) -> None:
    parsed = parse((documents / "html/fake-html-with-footer-and-header.html").read_bytes())
    assert parsed.text == "# My First Heading\n\nMy first paragraph."
    assert parsed.title == "My First Heading"  # no <title>: the first <h1>
    assert parsed.warnings == []


def chinese_page(documents: Path) -> tuple[dict[str, Any], bytes, list[str]]:
    rows = [json.loads(line) for line in (documents / "manifest.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["format"] == "html" and r["lang"] == "zh")
    lines = (documents / "zh_extraction_probes.jsonl").read_text(encoding="utf-8").splitlines()
    probes = [
        p["expected_substring"] for p in map(json.loads, lines) if p["file"].endswith(".html")
    ]
    return row, (documents / row["file"]).read_bytes(), probes


def test_chinese_probes_and_title(documents: Path) -> None:
    row, data, probes = chinese_page(documents)
    parsed = parse(data)
    assert len(probes) == 3
    for probe in probes:
        assert squeeze(probe) in squeeze(parsed.text)
    assert parsed.title == row["title"]
    assert parsed.text.startswith(f"# {row['title']}\n\n第一条")
    assert parsed.text.count("\n\n") >= row["num_articles"]  # one paragraph per line at least


@pytest.mark.parametrize(
    "declaration",
    [
        '<meta charset="gbk">',
        '<meta charset="GB2312">',
        '<meta http-equiv="Content-Type" content="text/html; charset=gb18030">',
    ],
)
def test_gbk_pages_read_by_their_meta_charset(documents: Path, declaration: str) -> None:
    _, data, probes = chinese_page(documents)
    page = data.decode("utf-8").replace('<meta charset="utf-8">', declaration)
    assert declaration in page
    parsed = parse(page.encode("gb18030"))
    assert parsed.text == parse(data).text
    assert parsed.warnings == []
    assert squeeze(probes[1]) in squeeze(parsed.text)


def test_bom_and_undeclared_gbk_are_detected(documents: Path) -> None:
    _, data, _ = chinese_page(documents)
    expected = parse(data).text
    undeclared = data.decode("utf-8").replace('<meta charset="utf-8">', "")
    assert parse(undeclared.encode("gbk")).text == expected
    assert parse(codecs.BOM_UTF16_LE + undeclared.encode("utf-16-le")).text == expected
    assert parse(codecs.BOM_UTF8 + undeclared.encode("utf-8")).text == expected


def test_a_stale_charset_declaration_on_a_utf8_page(documents: Path) -> None:
    _, data, _ = chinese_page(documents)
    stale = data.replace(b'<meta charset="utf-8">', b'<meta charset="gbk">')
    parsed = parse(stale)
    assert parsed.text == parse(data).text
    assert parsed.warnings == ["the page declares gbk but is UTF-8; read as UTF-8"]


def test_falls_back_to_the_visible_text_when_trafilatura_finds_nothing() -> None:
    page = """<html><body><nav>Menu</nav>
    <div id="comments"><h2>Notice board</h2><p>The boiler room is closed on Friday.</p>
    <ul><li>Use the side door</li><li>Call 8808</li></ul>
    <table><tr><td>Room</td><td>B12</td></tr></table></div>
    <footer>Footer</footer></body></html>"""
    parsed = parse(page)
    assert parsed.text == (
        "## Notice board\n\nThe boiler room is closed on Friday.\n\n"
        "- Use the side door\n- Call 8808\n\nRoom | B12"
    )
    assert parsed.warnings == ["main-content extraction found nothing; kept all visible text"]
    assert parsed.title == "Notice board"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"  \n ", "is empty"),
        (b"\x00\x01\x02\x03binary\x00" * 50, "binary data"),
        (
            b"<html><head><script>document.write('hi')</script></head><body></body></html>",
            "no visible text",
        ),
    ],
    ids=["zero-bytes", "blank", "binary", "script-only"],
)
def test_unusable_pages_are_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message) as e:
        parse(data)
    assert e.value.fix
