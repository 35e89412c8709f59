"""What every parser takes and gives: raw bytes of one file in, `Parsed` text out.

A parser never touches the workspace. It raises `BadInput` (message + fix) for anything a
person must act on — the ingest step turns that into a quarantine record and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from feilun.core.registry import lookup

DEFAULT_MAX_PAGES = 5_000


@dataclass(frozen=True)
class ParseOptions:
    """Per-batch choices the user makes on the command line."""

    password: str | None = None  # for encrypted PDFs
    text_field: str | None = None  # CSV column / JSONL field holding the text; None: guess
    max_pages: int = DEFAULT_MAX_PAGES


@dataclass
class Parsed:
    """The text of one file and what was learned while extracting it."""

    text: str
    media_type: str  # "application/pdf", "text/markdown", …
    title: str = ""
    pages: int = 0  # 0 for formats without pages
    page_starts: list[int] = field(default_factory=list)  # char offset where page i+1 begins
    row_starts: list[int] = field(default_factory=list)  # tabular files: where row i+1 begins
    row_ids: list[str] = field(default_factory=list)  # each row's own `_id`/`id`, if it has one
    warnings: list[str] = field(default_factory=list)  # kept, shown, never fatal
    encoding: str = ""  # the text encoding detected, for formats stored as text


class Parser(Protocol):
    """Extracts text from one file's bytes. Registered under `feilun.parsers` by file type."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """Text of the file `name` (used in messages only); BadInput when it cannot be read."""
        ...


def parser_for(file_type: str) -> Parser:
    """The registered parser of a file type (`pdf`, `docx`, `html`, `markdown`, `text`, …)."""
    parser: Parser = lookup("parsers", file_type)
    return parser
