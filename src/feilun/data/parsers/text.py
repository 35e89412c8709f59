"""Plain text in any common encoding; the title is its first short non-empty line."""

from __future__ import annotations

from feilun.core.errors import BadInput
from feilun.data.decoding import decode_text
from feilun.data.parsing import Parsed, ParseOptions

MAX_TITLE_CHARS = 100


def decode_nonempty(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """Decoded text, the encoding and warnings; BadInput when there is no text at all."""
    text, encoding, warnings = decode_text(data, name)
    if not text.strip():
        raise BadInput(
            f"{name} is empty (no text in {len(data)} bytes)",
            "check that it was exported completely, or leave it out of the batch",
        )
    return text, encoding, warnings


def first_short_line(text: str) -> str:
    """The first non-empty line if it is short enough to be a title, else ""."""
    for line in text.split("\n"):
        line = line.strip()
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else ""
    return ""


class TextParser:
    """Reads .txt and other plain-text files."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """The decoded text of `name`, newlines normalised."""
        text, encoding, warnings = decode_nonempty(data, name)
        return Parsed(
            text=text,
            media_type="text/plain",
            title=first_short_line(text),
            warnings=warnings,
            encoding=encoding,
        )


PARSER = TextParser()
