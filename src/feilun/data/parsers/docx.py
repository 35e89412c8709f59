"""DOCX parser (python-docx): the body in document order, structure kept as light Markdown.

Paragraphs and tables come out in the order the body XML holds them (content controls opened),
separated by blank lines; headings become `#`/`##` lines so the chunker can follow sections,
list items `- item` or `1. item` (indented by level), table rows `cell | cell | cell`.
Headers, footers, footnotes and comments live outside the body and are left out.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from feilun.core.errors import BadInput
from feilun.data.parsing import Parsed, ParseOptions

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MAX_UNZIPPED_BYTES = 512 << 20  # all parts together, as the zip declares them
MAIN_PART = "word/document.xml"

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# Subtrees without visible body text: properties, deleted runs, field codes, duplicate fallbacks.
_SKIP = {_W + "pPr", _W + "rPr", _W + "del", _W + "instrText", _W + "delText", _MC_FALLBACK}
_HEADING = re.compile(r"heading ([1-9])")
_MAX_STYLE_DEPTH = 16
_LIST_STYLE = re.compile(r"list (?:bullet|number) ([2-9])")
_RESAVE = "open it in Word or LibreOffice and save it again as .docx"


class DocxParser:
    """Text of a Word document; see the module docstring for the layout of the text."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """Text of the DOCX `name`; BadInput when it is not a readable Word document."""
        _check_package(data, name)
        document = _open(data, name)
        lists = _Lists(document)
        blocks: list[tuple[str, str]] = []  # (kind, text), kind: heading, item, paragraph, table
        for element in _body_blocks(document.element.body):
            block = _block(element, document, lists)
            if block is not None:
                blocks.append(block)
        if not blocks:
            raise BadInput(
                f"{name} has no text in its body",
                "if it holds scanned pages or pictures of text, OCR them first",
            )
        text = "".join(
            ("\n" if kind == "item" and blocks[i - 1][0] == "item" else "\n\n") * (i > 0) + body
            for i, (kind, body) in enumerate(blocks)
        )
        return Parsed(text=text, media_type=MEDIA_TYPE, title=_title(document, blocks))


PARSER = DocxParser()


def _check_package(data: bytes, name: str) -> None:
    if not data:
        raise BadInput(f"{name} is empty (0 bytes)", "re-download or re-export the document")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadInput(
            f"{name} is an old binary Word file (.doc) or an encrypted .docx, not a .docx",
            "save it as .docx (without a password) in Word or LibreOffice",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise BadInput(
            f"{name} is not a .docx: it is not a readable zip archive ({e})",
            f"check the file's real type; if it is a Word document, {_RESAVE}",
        ) from e
    if MAIN_PART not in {info.filename for info in infos}:
        raise BadInput(
            f"{name} is a zip archive without {MAIN_PART}, so not a Word document",
            f"check the file's real type; if it is a Word document, {_RESAVE}",
        )
    unzipped = sum(info.file_size for info in infos)
    if unzipped > MAX_UNZIPPED_BYTES:
        raise BadInput(
            f"{name} unzips to {unzipped} bytes, over the limit of {MAX_UNZIPPED_BYTES}",
            "a zip bomb, or a document full of media; save a copy without the media",
        )


def _open(data: bytes, name: str) -> Any:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml import etree

    try:
        return docx.Document(io.BytesIO(data))
    except (
        PackageNotFoundError,
        zipfile.BadZipFile,
        etree.XMLSyntaxError,
        KeyError,
        ValueError,
        OSError,
    ) as e:
        raise BadInput(
            f"{name} is a damaged Word document ({type(e).__name__}: {e})",
            _RESAVE[0].upper() + _RESAVE[1:],
        ) from e


def _body_blocks(container: Any) -> Iterator[Any]:
    """Paragraphs and tables of the body in order, looking inside content controls."""
    for child in container:
        if child.tag in (_W + "p", _W + "tbl"):
            yield child
        elif child.tag == _W + "sdt":
            content = child.find(_W + "sdtContent")
            if content is not None:
                yield from _body_blocks(content)
        elif child.tag == _W + "customXml":
            yield from _body_blocks(child)


def _block(element: Any, document: Any, lists: _Lists) -> tuple[str, str] | None:
    if element.tag == _W + "tbl":
        rows = _table_rows(element)
        return ("table", "\n".join(rows)) if rows else None
    text = _clean(_paragraph_text(element))
    if not text:
        return None
    from docx.text.paragraph import Paragraph

    style = Paragraph(element, document).style
    level = _heading_level(element, style)
    if level:
        return "heading", "#" * min(level, 6) + " " + " ".join(text.split())
    marker = lists.marker(element, style)
    if marker:
        return "item", marker + text
    return "paragraph", text


def _paragraph_text(element: Any) -> str:
    """Visible text of a paragraph: runs, hyperlinks, insertions, fields' shown results."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        for child in node:
            tag = child.tag
            if tag in _SKIP or not isinstance(tag, str):
                continue
            if tag == _W + "t":
                parts.append(child.text or "")
            elif tag == _W + "tab":
                parts.append("\t")
            elif tag in (_W + "br", _W + "cr"):
                parts.append("\n")
            elif tag == _W + "noBreakHyphen":
                parts.append("-")
            elif tag == _W + "p":  # a paragraph of a text box inside this one
                parts.append("\n")
                walk(child)
            else:
                walk(child)

    walk(element)
    return "".join(parts)


def _clean(text: str) -> str:
    lines = (" ".join(line.replace("\t", " ").split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _table_rows(table: Any) -> list[str]:
    """`cell | cell | cell` per row; a merged cell once; a nested table inline in its cell."""
    rows = []
    for row in table.findall(_W + "tr"):
        cells = [_cell_text(cell) for cell in row.findall(_W + "tc")]
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def _cell_text(cell: Any) -> str:
    parts = []
    for child in _body_blocks(cell):
        if child.tag == _W + "tbl":
            parts.append("; ".join(_table_rows(child)))
        else:
            parts.append(" ".join(_paragraph_text(child).split()))
    return " ".join(p for p in parts if p).replace("|", "\\|")


def _heading_level(element: Any, style: Any) -> int:
    """1-9 for a heading (by style name or outline level), 0 for body text."""
    name = (style.name or "").lower() if style is not None else ""
    if name == "title":
        return 1
    if match := _HEADING.fullmatch(name):
        return int(match.group(1))
    outline = _own_or_styled(element, style, "outlineLvl")
    value = outline.get(_W + "val") if outline is not None else None
    return int(value) + 1 if value is not None and value.isdigit() and int(value) < 9 else 0


class _Lists:
    """List markers: `- ` for bullets, `n. ` for numbered items, two spaces per level."""

    def __init__(self, document: Any) -> None:
        try:
            self._numbering = document.part.numbering_part.element
        except (KeyError, NotImplementedError):
            self._numbering = None
        self._formats: dict[tuple[str, int], str] = {}
        self._counters: dict[tuple[str, int], int] = {}

    def marker(self, element: Any, style: Any) -> str:
        """The marker of a list paragraph, or "" for any other paragraph."""
        num_pr = _own_or_styled(element, style, "numPr")
        num_id = _val(num_pr.find(_W + "numId"), "0") if num_pr is not None else "0"
        if num_id == "0":  # not a list item, or numbering switched off for this paragraph
            return ""
        ilvl = _val(num_pr.find(_W + "ilvl"), "0")
        level = min(int(ilvl), 8) if ilvl.isdigit() else 0
        # "List Bullet 2" and its kin are a level deeper through their own list, not by ilvl.
        named = _LIST_STYLE.fullmatch((style.name or "").lower()) if style is not None else None
        indent = "  " * (
            int(named.group(1)) - 1 if named and num_pr.find(_W + "ilvl") is None else level
        )
        form = self._format(num_id, level)
        if form == "none":
            return ""
        if form == "bullet":
            return indent + "- "
        for key in [k for k in self._counters if k[0] == num_id and k[1] > level]:
            del self._counters[key]  # a deeper list restarts under each new item
        count = self._counters.get((num_id, level), 0) + 1
        self._counters[(num_id, level)] = count
        return f"{indent}{count}. "

    def _format(self, num_id: str, level: int) -> str:
        key = (num_id, level)
        if key not in self._formats:
            found = "bullet"
            if self._numbering is not None and num_id.isdigit():
                abstract = self._numbering.xpath(
                    f"w:num[@w:numId='{num_id}']/w:abstractNumId/@w:val"
                )
                if abstract and abstract[0].isdigit():
                    formats = self._numbering.xpath(
                        f"w:abstractNum[@w:abstractNumId='{abstract[0]}']"
                        f"/w:lvl[@w:ilvl='{level}']/w:numFmt/@w:val"
                    )
                    found = formats[0] if formats else "bullet"
            self._formats[key] = found
        return self._formats[key]


def _own_or_styled(element: Any, style: Any, prop: str) -> Any:
    """The paragraph property `prop`, set on the paragraph or inherited from its styles."""
    found = element.find(f"{_W}pPr/{_W}{prop}")
    for _ in range(_MAX_STYLE_DEPTH):  # a damaged file may base styles on each other in a loop
        if found is not None or style is None:
            break
        found = style.element.find(f"{_W}pPr/{_W}{prop}")
        style = style.base_style
    return found


def _val(element: Any, default: str) -> str:
    return str(element.get(_W + "val", default)) if element is not None else default


def _title(document: Any, blocks: list[tuple[str, str]]) -> str:
    title = " ".join((document.core_properties.title or "").split())
    if not title:
        headings = [body.lstrip("#").strip() for kind, body in blocks if kind == "heading"]
        candidates = headings or [body for kind, body in blocks if kind == "paragraph"]
        title = candidates[0].splitlines()[0] if candidates else ""
    return title[:200]
