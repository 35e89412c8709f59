"""Structure-aware chunking: a Document's text cut into Chunks along its own structure.

Hard boundaries are Markdown headings, Chinese chapter lines (第三章 …) and articles (第十二条);
inside a section, paragraphs, list items and table rows are packed whole while they fit,
and cut at sentence ends (Chinese 。！？； and English . ! ?) when they do not. Chunks of a
section overlap by whole sentences. Invariant: `document.text[c.start_char:c.end_char] ==
c.text` for every chunk, and a chunk never spans two sections.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pydantic

from feilun.core.records import Chunk, Document

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# One token: a CJK character, or a run of other letters and digits (a word or a number).
_TOKEN = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_NUMERAL = "零〇一二三四五六七八九十百千两0-9０-９"
_MD_HEADING = re.compile(r"(#{1,6})[ \t]+(\S.*?)[ \t#]*$")
_CN_HEADING = re.compile(rf"第[{_NUMERAL}]+([编章节])(?:[ \t\u3000]+\S.{{0,40}})?$")
_CN_LEVELS = {"编": 2, "章": 3, "节": 4}
_ARTICLE = re.compile(rf"第[{_NUMERAL}]+条(?:之[{_NUMERAL}]+)?")
_LIST_ITEM = re.compile(
    r"(?:[-*+•·][ \t]+|\d{1,3}(?:[.)．][ \t]+|、)|[（(][一二三四五六七八九十\dA-Za-z]{1,4}[)）]"
    r"|[一二三四五六七八九十]{1,3}、)"
)
_TABLE_ROW = re.compile(r"\|.*\|$")
_COMMENT = re.compile(r"<!--.*-->$")
# A sentence ends after Chinese or English closing punctuation (plus closing quotes), or a
# line break; an English full stop only when a new sentence visibly starts after it.
_SENTENCE_END = re.compile(
    r"(?:[。！？；!?;]+|…+)[”’」』）)\"']*"
    r"|\.[\"')\]”’]*(?=\s+[A-Z0-9(\"“‘])"
    r"|\n"
)
_LABEL_CHARS = 80  # longer headings (some statutes put whole sentences there) are shortened


class ChunkSettings(pydantic.BaseModel):
    """How documents are cut into chunks."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    chunk_tokens: int = pydantic.Field(
        400, ge=16, le=8192, description="Target chunk size in tokens (a CJK character or a word)."
    )
    overlap_tokens: int = pydantic.Field(
        60, ge=0, description="Tokens of whole sentences repeated from the previous chunk."
    )

    @pydantic.model_validator(mode="after")
    def _overlap_fits(self) -> ChunkSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens={self.overlap_tokens} must be < chunk_tokens={self.chunk_tokens}"
            )
        return self


def count_tokens(text: str) -> int:
    """Approximate model tokens: one per CJK character, one per other word or number."""
    return len(_TOKEN.findall(text))


@dataclass
class _Piece:
    """A sentence (or a heading line) of the text: the smallest thing a chunk holds."""

    start: int
    end: int
    tokens: int
    is_unit_start: bool = False  # starts a paragraph, list item or table row
    unit_tokens: int = 0  # tokens from here to the end of its unit


@dataclass
class _Section:
    path: list[str]
    pieces: list[_Piece] = field(default_factory=list)
    has_body: bool = False


def chunk_document(document: Document, settings: ChunkSettings | None = None) -> list[Chunk]:
    """The Chunks of `document`, in text order (none when it has no text)."""
    settings = settings or ChunkSettings()
    text = document.text
    if not text.strip():
        return []
    page_starts = list(document.meta.get("page_starts") or [])
    chunks: list[Chunk] = []
    for path, pieces in _sections_to_pack(text):
        for group in _pack(text, pieces, settings.chunk_tokens, settings.overlap_tokens):
            start, end = group[0].start, group[-1].end
            chunks.append(_make_chunk(document, len(chunks) + 1, start, end, path, page_starts))
    return chunks


def chunk_language(text: str, fallback: str = "") -> str:
    """`zh` when CJK characters are at least a fifth of the tokens, `en` for Latin text."""
    tokens = count_tokens(text)
    if not tokens:
        return fallback or "other"
    if len(_CJK_CHAR.findall(text)) * 5 >= tokens:
        return "zh"
    return "en" if len(_LATIN_WORD.findall(text)) * 2 >= tokens else (fallback or "other")


def _make_chunk(
    document: Document, number: int, start: int, end: int, path: list[str], page_starts: list[int]
) -> Chunk:
    text = document.text[start:end]
    page = (bisect.bisect_right(page_starts, start) or None) if page_starts else None
    key = f"{document.id}:{start}:{end}".encode()
    return Chunk(
        id="chk_" + hashlib.sha256(key).hexdigest()[:24],
        name=f"{document.name}#{number}",
        document_id=document.id,
        text=text,
        page=page,
        heading_path=path,
        start_char=start,
        end_char=end,
        inputs=[document.id],
        meta={
            "document": document.name,
            "title": document.title,
            "source_id": document.source_id,
            "collection": document.collection,
            "lang": chunk_language(text, document.language),
        },
    )


def _sections_to_pack(text: str) -> Iterator[tuple[list[str], list[_Piece]]]:
    """(heading path, pieces) per section; a heading with no body joins the next section."""
    carried: list[_Piece] = []
    carried_path: list[str] = []
    for section in _sections(text):
        if not section.has_body:
            if carried and not _is_within(section.path, carried_path):
                yield carried_path, carried
                carried = []
            carried += section.pieces
            carried_path = section.path
            continue
        if carried and not _is_within(section.path, carried_path):
            yield carried_path, carried
            carried = []
        yield section.path, carried + section.pieces
        carried = []
    if carried:
        yield carried_path, carried


def _is_within(path: list[str], parent: list[str]) -> bool:
    return path[: len(parent)] == parent


def _sections(text: str) -> Iterator[_Section]:
    """Split the text at headings and articles; each section lists its pieces."""
    headings: list[tuple[int, str]] = []  # (level, label) from the outermost
    section = _Section(path=[])
    unit: list[int] = []  # [start, end] of the paragraph, item or row being read
    offset = 0
    for line in text.splitlines(keepends=True):
        start, end = _content_span(line, offset)
        offset += len(line)
        content = text[start:end]
        kind, level, label = _classify(content)
        if kind in ("blank", "comment"):
            _close_unit(text, section, unit)
            continue
        if kind in ("heading", "article"):
            _close_unit(text, section, unit)
            if section.pieces:
                yield section
            if kind == "heading":
                while headings and headings[-1][0] >= level:
                    headings.pop()
                headings.append((level, label))
                section = _Section(path=[h[1] for h in headings])
                tokens = count_tokens(content)
                section.pieces.append(_Piece(start, end, tokens, True, tokens))
                continue
            section = _Section(path=[*(h[1] for h in headings), label])
        if kind in ("item", "row", "article"):
            _close_unit(text, section, unit)
        if unit:
            unit[1] = end
        else:
            unit[:] = [start, end]
    _close_unit(text, section, unit)
    if section.pieces:
        yield section


def _content_span(line: str, offset: int) -> tuple[int, int]:
    stripped = line.strip()
    if not stripped:
        return offset, offset
    start = offset + line.index(stripped[0])
    return start, start + len(stripped)


def _classify(content: str) -> tuple[str, int, str]:
    """(kind, heading level, label) of one stripped line."""
    if not content:
        return "blank", 0, ""
    if _COMMENT.match(content):
        return "comment", 0, ""
    if content.startswith("#") and (match := _MD_HEADING.match(content)):
        return "heading", len(match.group(1)), _label(match.group(2))
    if content.startswith("第"):
        if match := _CN_HEADING.match(content):
            return "heading", _CN_LEVELS[match.group(1)], _label(content)
        if match := _ARTICLE.match(content):
            return "article", 0, match.group()
    if content.startswith("|") and _TABLE_ROW.match(content):
        return "row", 0, ""
    if _LIST_ITEM.match(content):
        return "item", 0, ""
    return "text", 0, ""


def _label(heading: str) -> str:
    flat = " ".join(heading.split())
    return flat if len(flat) <= _LABEL_CHARS else flat[: _LABEL_CHARS - 1] + "…"


def _close_unit(text: str, section: _Section, unit: list[int]) -> None:
    """Add the pieces (sentences) of the unit being read to the section, and reset it."""
    if not unit:
        return
    pieces = list(_sentences(text, unit[0], unit[1]))
    unit.clear()
    if not pieces:
        return
    pieces[0].is_unit_start = True
    remaining = sum(p.tokens for p in pieces)
    for piece in pieces:
        piece.unit_tokens = remaining
        remaining -= piece.tokens
    section.pieces += pieces
    section.has_body = True


def _sentences(text: str, start: int, end: int) -> Iterator[_Piece]:
    """Sentence pieces of text[start:end], without surrounding whitespace."""
    position = start
    for match in _SENTENCE_END.finditer(text, start, end):
        yield from _piece(text, position, match.end())
        position = match.end()
    yield from _piece(text, position, end)


def _piece(text: str, start: int, end: int) -> Iterator[_Piece]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield _Piece(start, end, count_tokens(text[start:end]))


def _pack(text: str, pieces: list[_Piece], budget: int, overlap: int) -> Iterator[list[_Piece]]:
    """Group pieces into chunks of at most `budget` tokens, preferring to cut between units."""
    current: list[_Piece] = []
    size = 0
    for piece in _fit(text, pieces, budget):
        is_full = size + piece.tokens > budget
        # Start a new chunk at a paragraph that will not fit, if this one is half full.
        is_early = piece.is_unit_start and size + piece.unit_tokens > budget and size * 2 >= budget
        if current and (is_full or is_early):
            yield current
            current = _tail(current, overlap, budget - piece.tokens)
            size = sum(p.tokens for p in current)
        current.append(piece)
        size += piece.tokens
    if current:
        yield current


def _tail(chunk: list[_Piece], overlap: int, room: int) -> list[_Piece]:
    """The last whole pieces of a chunk that fit the overlap (never the whole chunk)."""
    tail: list[_Piece] = []
    size = 0
    for piece in reversed(chunk[1:]):
        if size + piece.tokens > min(overlap, room):
            break
        tail.insert(0, piece)
        size += piece.tokens
    return tail


def _fit(text: str, pieces: list[_Piece], budget: int) -> Iterator[_Piece]:
    """Pieces, with any longer than the budget cut at token boundaries."""
    for piece in pieces:
        if piece.tokens <= budget:
            yield piece
            continue
        starts = [m.start() for m in _TOKEN.finditer(text, piece.start, piece.end)]
        bounds = [*starts[::budget], piece.end]
        left = piece.unit_tokens
        for n, (start, end) in enumerate(itertools.pairwise(bounds)):
            for part in _piece(text, start, end):
                part.is_unit_start = piece.is_unit_start and n == 0
                part.unit_tokens = left
                left -= part.tokens
                yield part
