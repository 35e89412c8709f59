"""The `normalize` operator: Unicode and whitespace normalisation of an item's text.

NFKC turns full-width letters and digits into ASCII, but it would also turn the Chinese comma
`，` into `,`: the CJK punctuation listed in `cjk_punctuation` is kept as written. The result is
deterministic and idempotent (normalising twice changes nothing more).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import ClassVar, Literal

import pydantic

from feilun.data.items import Item, Rejection

# Full-width punctuation NFKC would rewrite to ASCII. Plain CJK marks (。「」、《》【】) are not
# touched by NFKC in the first place.
CJK_PUNCTUATION = "，！？；：（）…～"

# Invisible characters that carry no text: zero-width spaces and joiners, BOM, soft hyphen,
# word joiner, and the bidirectional embedding/override/isolate controls.
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
_INVISIBLE += "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Line and page breaks other than "\n" (a PDF's form feed between pages becomes a paragraph break).
_BREAKS = {"\r\n": "\n", "\r": "\n", "\x0b": "\n", "\x0c": "\n\n", "\x85": "\n"}
_BREAKS |= {"\x1c": "\n\n", "\x1d": "\n\n", "\x1e": "\n", "\u2028": "\n", "\u2029": "\n\n"}
_BREAK_RE = re.compile("|".join(re.escape(b) for b in _BREAKS))
# Any horizontal whitespace (tab, no-break and typographic spaces, the ideographic space).
_SPACES_RE = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
# Full-width ASCII letters and digits, and the ideographic space, to their ASCII forms.
_HALF_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)}
_HALF_WIDTH |= {cp: cp - 0xFEE0 for cp in range(0xFF21, 0xFF3B)}
_HALF_WIDTH |= {cp: cp - 0xFEE0 for cp in range(0xFF41, 0xFF5B)}
_HALF_WIDTH[0x3000] = 0x20


def _is_removable(ch: str) -> bool:
    """A control character (other than tab and newline) or an invisible formatting one."""
    if ch in "\t\n":
        return False
    return ch in _INVISIBLE or unicodedata.category(ch) == "Cc"


class Normalize:
    """Unicode form, full-width → half-width, invisible characters out, tidy whitespace."""

    name: ClassVar[str] = "normalize"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of the `normalize` operator."""

        model_config = pydantic.ConfigDict(extra="forbid")
        form: Literal["NFKC", "NFC", "none"] = pydantic.Field(
            default="NFKC",
            description="Unicode normalisation form; NFKC also folds full-width and compatibility "
            "characters (ﬁ → fi, ① → 1).",
        )
        keep_cjk_punctuation: bool = pydantic.Field(
            default=True,
            description="Keep the characters of `cjk_punctuation` as written instead of letting "
            "NFKC turn them into ASCII (， → ,).",
        )
        cjk_punctuation: str = pydantic.Field(
            default=CJK_PUNCTUATION,
            description="Full-width punctuation kept when keep_cjk_punctuation is true.",
        )
        to_half_width: bool = pydantic.Field(
            default=True,
            description="Full-width ASCII letters and digits and the ideographic space become "
            "ASCII even when form is not NFKC.",
        )
        remove_invisible: bool = pydantic.Field(
            default=True,
            description="Remove control characters, zero-width characters, BOM, soft hyphens "
            "and bidirectional controls.",
        )
        collapse_spaces: bool = pydantic.Field(
            default=True, description="Replace each run of spaces and tabs with one space."
        )
        strip_lines: bool = pydantic.Field(
            default=True, description="Remove spaces at the start and end of every line."
        )
        max_blank_lines: int = pydantic.Field(
            default=1, ge=0, description="Most blank lines kept between two paragraphs."
        )

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or self.Params()
        keep = self.params.cjk_punctuation if self.params.keep_cjk_punctuation else ""
        # Split on kept characters (captured) so only the text between them is normalised.
        self._keep_re = re.compile(f"([{re.escape(keep)}])") if keep else None
        # More than max_blank_lines blank (or whitespace-only) lines in a row.
        min_run = self.params.max_blank_lines + 1
        self._blank_re = re.compile(r"\n(?:[ \t]*\n){" + str(min_run) + ",}")

    def normalize(self, text: str) -> str:
        """The normalised text."""
        p = self.params
        text = _BREAK_RE.sub(lambda m: _BREAKS[m.group()], text)
        if p.remove_invisible:
            text = "".join(ch for ch in text if not _is_removable(ch))
        if p.form != "none":
            text = self._unicode_form(text, p.form)
        if p.to_half_width:
            text = text.translate(_HALF_WIDTH)
        if p.collapse_spaces:
            text = _SPACES_RE.sub(" ", text)
        if p.strip_lines:
            text = "\n".join(line.strip() for line in text.split("\n"))
        text = self._blank_re.sub("\n" * (p.max_blank_lines + 1), text)
        return text.strip()

    def _unicode_form(self, text: str, form: Literal["NFKC", "NFC"]) -> str:
        if self._keep_re is None:
            return unicodedata.normalize(form, text)
        parts = self._keep_re.split(text)
        # Odd indexes are the kept punctuation marks themselves.
        return "".join(
            part if i % 2 else unicodedata.normalize(form, part) for i, part in enumerate(parts)
        )

    def process(self, item: Item) -> Item | Rejection:
        """The item with normalised text; rejected only if nothing is left."""
        text = self.normalize(item.text)
        if not text:
            return Rejection(
                item=item,
                operator=self.name,
                reason=f"empty: no text left after normalization (was {len(item.text)} chars)",
            )
        meta = dict(item.meta)
        meta[self.name] = {"chars_in": len(item.text), "chars_out": len(text)}
        return dataclasses.replace(item, text=text, meta=meta)
