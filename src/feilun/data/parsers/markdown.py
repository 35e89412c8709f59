"""Markdown kept as written (headings feed chunking); the title is its first heading."""

from __future__ import annotations

import re

from feilun.data.parsers.text import MAX_TITLE_CHARS, decode_nonempty, first_short_line
from feilun.data.parsing import Parsed, ParseOptions

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"[*_`]+")


class MarkdownParser:
    """Reads .md files."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """The Markdown source of `name`, newlines normalised, titled by its first heading."""
        text, encoding, warnings = decode_nonempty(data, name)
        return Parsed(
            text=text,
            media_type="text/markdown",
            title=markdown_title(text),
            warnings=warnings,
            encoding=encoding,
        )


def markdown_title(text: str) -> str:
    """Front-matter `title:`, else the first ATX or setext heading, else the first short line."""
    body = text
    front = _FRONT_MATTER.match(text)
    if front is not None:
        found = _FRONT_MATTER_TITLE.search(front.group(1))
        if found is not None:
            return _plain(found.group(1).strip("'\""))
        body = text[front.end() :]
    heading = _first_heading(body.split("\n"))
    if heading:
        return _plain(heading)
    return first_short_line(_COMMENT.sub("", body))


def _first_heading(lines: list[str]) -> str:
    fence = ""
    for i, line in enumerate(lines):
        opened = _FENCE.match(line)
        if fence:
            if opened is not None and opened.group(1)[0] == fence[0]:
                fence = ""
            continue
        if opened is not None:
            fence = opened.group(1)
            continue
        atx = _ATX.match(line)
        if atx is not None and (atx.group(1) or "").strip():
            return (atx.group(1) or "").strip()
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _SETEXT_UNDERLINE.match(next_line) and not line.startswith("    "):
            return line.strip()
    return ""


def _plain(title: str) -> str:
    """The heading without links and emphasis marks, cut to a title's length."""
    return _EMPHASIS.sub("", _LINK.sub(r"\1", title)).strip()[:MAX_TITLE_CHARS]


PARSER = MarkdownParser()
