"""HTML parser: the page's main content as light Markdown, boilerplate left out.

Bytes are decoded by the BOM, then the page's own `<meta charset>` (GBK and GB2312 read as
GB18030, their superset), then detection. Page furniture (the site header and footer, nav,
aside, scripts, styles, cookie banners) is removed first; trafilatura then picks the main content
(tables kept, recall favoured). On a page too small for it we walk the remaining tree ourselves.
Paragraphs are separated by blank lines, headings are `#` lines.
"""

from __future__ import annotations

import codecs
import logging
import re
from typing import Any

from feilun.core.errors import BadInput
from feilun.data.decoding import decode_text
from feilun.data.parsing import Parsed, ParseOptions

logger = logging.getLogger(__name__)

MEDIA_TYPE = "text/html"
_PRESCAN_BYTES = 4096
_DECLARED = re.compile(
    rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-z0-9_.:-]+)|<\?xml[^>]*?encoding\s*=\s*["']([a-z0-9_.:-]+)""",
    re.IGNORECASE,
)
# What the WHATWG encoding standard reads these codecs as: the superset browsers use.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "iso8859-1": "cp1252", "ascii": "cp1252"}
_UNREADABLE = re.compile("[\x00-\x08\x0b\x0e-\x1f]")
# Not `form`: ASP.NET pages wrap their whole body in one.
_FURNITURE = ("nav", "aside", "script", "style", "noscript", "template", "iframe", "svg")
_BANNER = re.compile(r"cookie|consent|gdpr", re.IGNORECASE)
_BLOCKS = {
    "p", "div", "section", "article", "main", "blockquote", "pre", "table", "tr", "ul", "ol",
    "dl", "dt", "dd", "figure", "figcaption", "address", "body", "center", "fieldset",
}  # fmt: skip


class HtmlParser:
    """Main text of an HTML page; see the module docstring for what is kept."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """Text of the page `name`; BadInput when it is empty, binary or has no text."""
        if not data.strip():
            raise BadInput(f"{name} is empty", "re-download or re-export the page")
        text, warnings = _decode(data, name)
        tree = _tree(text, name)
        title = _title(tree)
        _remove_furniture(tree)
        body = _main_content(tree)
        heading = _title(tree, paths=("//h1",))
        if body and heading and "".join(heading.split()) not in "".join(body.split()):
            body = f"# {heading}\n\n{body}"  # trafilatura drops an h1 that repeats the title
        if not body:
            body = _walk_text(tree)
            if body:
                warnings.append("main-content extraction found nothing; kept all visible text")
        if not body:
            raise BadInput(
                f"{name} has no visible text",
                "if its text is drawn by scripts, save the rendered page from a browser",
            )
        first_line = body.splitlines()[0].lstrip("#").strip()
        return Parsed(
            text=body, media_type=MEDIA_TYPE, title=title or first_line, warnings=warnings
        )


PARSER = HtmlParser()


def _decode(data: bytes, name: str) -> tuple[str, list[str]]:
    """The page as text, and warnings about how it was decoded."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, _, warnings = decode_text(data, name)
        return text, warnings
    declared = _DECLARED.search(data[:_PRESCAN_BYTES])
    if declared is None:
        text, _, warnings = decode_text(data, name)
        return text, warnings
    label = (declared.group(1) or declared.group(2)).decode("ascii").lower()
    try:
        encoding = codecs.lookup(label).name
    except LookupError:
        text, found, warnings = decode_text(data, name)
        return text, [*warnings, f"unknown charset {label!r} declared; read as {found}"]
    encoding = _SUPERSETS.get(encoding, encoding)
    if encoding.startswith(("utf-16", "utf-32")):  # a page without a BOM is not UTF-16
        encoding = "utf-8"
    if encoding != "utf-8" and not data.isascii():
        # Legacy-encoded CJK is almost never valid UTF-8: valid UTF-8 means a stale declaration.
        try:
            return data.decode("utf-8"), [f"the page declares {label} but is UTF-8; read as UTF-8"]
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(encoding), []
    except UnicodeDecodeError:
        text, found, warnings = decode_text(data, name)
        return text, [
            *warnings,
            f"the page declares {label} but its bytes are not; read as {found}",
        ]


def _tree(text: str, name: str) -> Any:
    import lxml.html
    from lxml import etree

    text = _UNREADABLE.sub("", text)
    if text.lstrip().startswith("<?xml"):  # lxml refuses str input with an encoding declaration
        text = text.split("?>", 1)[-1]
    try:
        return lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as e:
        raise BadInput(
            f"{name} cannot be parsed as HTML ({e})", "check that the file really is an HTML page"
        ) from e


def _title(tree: Any, paths: tuple[str, ...] = ("//title", "//h1")) -> str:
    for path in paths:
        for element in tree.xpath(path):
            title = " ".join(element.text_content().split())
            if title:
                return title[:200]
    return ""


def _remove_furniture(tree: Any) -> None:
    """Drop the site's header/footer (not an article's own), nav, aside, scripts, banners."""
    doomed = [*tree.iter(*_FURNITURE, "head"), *tree.xpath("//*[@hidden]")]
    doomed += tree.xpath("//*[contains(translate(@style, ' ', ''), 'display:none')]")
    for element in tree.iter("header", "footer"):
        if not any(a.tag in ("article", "main") for a in element.iterancestors()):
            doomed.append(element)
    for element in tree.iter():
        marks = f"{element.get('id', '')} {element.get('class', '')}"
        is_container = element.tag in ("html", "body", "main", "article")
        if isinstance(element.tag, str) and not is_container and _BANNER.search(marks):
            doomed.append(element)
    for element in doomed:
        parent = element.getparent()
        if parent is not None:
            element.drop_tree()


def _main_content(tree: Any) -> str:
    import copy

    import trafilatura

    extracted = trafilatura.extract(
        copy.deepcopy(tree),  # it prunes the tree it is given; the fallback needs it whole
        output_format="markdown",
        include_tables=True,
        include_comments=False,
        favor_recall=True,
    )
    return _tidy(extracted or "")


def _walk_text(tree: Any) -> str:
    """Visible text of what is left of the page: blocks on their own lines, `#` headings."""
    for element in tree.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            element.text = f"\n\n{'#' * int(tag[1])} {element.text or ''}"
            element.tail = "\n\n" + (element.tail or "")
        elif tag == "li":
            element.text = "\n- " + (element.text or "")
        elif tag in ("td", "th") and element.getnext() is not None:
            element.tail = " | " + (element.tail or "")
        elif tag == "br":
            element.tail = "\n" + (element.tail or "")
        elif tag in _BLOCKS:
            element.text = "\n\n" + (element.text or "")
            element.tail = "\n\n" + (element.tail or "")
    return _tidy(tree.text_content())


def _tidy(text: str) -> str:
    """Spaces collapsed, at most one blank line in a row."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
