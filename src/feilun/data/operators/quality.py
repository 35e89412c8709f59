"""The `quality` operator: heuristic filters in the manner of Gopher and RefinedWeb.

Length, symbol and digit ratios, duplicate lines, repetition of the most frequent 2/3/4-gram and
mojibake. N-grams are over tokens where a Latin word or number is one token and each Han, kana
or Hangul character is one token, so Chinese without spaces is measured like English. Every
reason names the measured value and the limit it broke; `meta["quality"]` keeps the measures.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter
from typing import Any, ClassVar

import pydantic

from feilun.data.items import Item, Rejection

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
# Punctuation used as decoration or markup rather than in sentences; every Unicode symbol
# (categories Sm, Sc, Sk, So: box drawing, emoji, arrows, math) counts as well.
_SYMBOL_PUNCTUATION = frozenset("#*@&\\_|")
_HEADING_MARK = re.compile(r"^[ \t]*#{1,6}(?=[ \t])", re.MULTILINE)  # Markdown headings are text
# UTF-8 bytes read as Latin-1/cp1252: a lead byte (Ã, â, ð…) followed by continuation bytes.
_CONT = "\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_MOJIBAKE = re.compile(
    f"[\xc2-\xdf][{_CONT}]|[\xe0-\xef][{_CONT}]{{2}}|[\xf0-\xf4][{_CONT}]{{3}}"
    # GBK or UTF-8 bytes read as Latin-1: long runs of accented capitals and signs.
    "|[\xa1-\xff]{4,}"
    # U+FFFD (lost bytes) written as UTF-8 and read back as GBK; MSVC fill bytes 0xCC/0xCD.
    "|(?:锟斤拷)+|烫{3,}|屯{3,}|\ufffd+"
)


def _is_symbol(ch: str) -> bool:
    return ch in _SYMBOL_PUNCTUATION or unicodedata.category(ch).startswith("S")


def tokenize(text: str) -> list[str]:
    """Tokens for repetition measures: Latin words and numbers, single CJK characters."""
    return _TOKEN.findall(text.lower())


def top_ngram_share(tokens: list[str], n: int) -> float:
    """Share of token characters covered by the most frequent n-gram (0 if none repeats)."""
    if len(tokens) < n:
        return 0.0
    grams = Counter(zip(*(tokens[i:] for i in range(n)), strict=False))
    top, count = max(grams.items(), key=lambda kv: (kv[1], len("".join(kv[0])), kv[0]))
    if count < 2:
        return 0.0
    covered = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) == top:
            covered[i : i + n] = [True] * n
    total = sum(len(t) for t in tokens)
    return sum(len(t) for t, c in zip(tokens, covered, strict=True) if c) / total


def duplicate_line_shares(text: str) -> tuple[float, float]:
    """Share of non-blank lines repeating an earlier line, and share of characters in them."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return 0.0, 0.0
    seen: set[str] = set()
    repeated = repeated_chars = 0
    for line in lines:
        if line in seen:
            repeated += 1
            repeated_chars += len(line)
        seen.add(line)
    return repeated / len(lines), repeated_chars / sum(len(line) for line in lines)


def measure(text: str, cjk_ngram_scale: int = 2) -> dict[str, float]:
    """Every quality measure of `text` (ratios between 0 and 1, lengths in chars).

    In text whose tokens are mostly CJK characters, n-grams are `cjk_ngram_scale` times longer:
    a Chinese word is about two characters, and the Gopher limits are for n-grams of words.
    """
    visible = [ch for ch in text if not ch.isspace()]
    n_visible = max(len(visible), 1)
    symbols = sum(1 for ch in _HEADING_MARK.sub("", text) if _is_symbol(ch))
    tokens = tokenize(text)
    n_cjk = sum(1 for t in tokens if len(t) == 1 and _CJK_CHAR.match(t))
    scale = cjk_ngram_scale if n_cjk * 2 > len(tokens) else 1
    dup_lines, dup_line_chars = duplicate_line_shares(text)
    mojibake = sum(len(m.group()) for m in _MOJIBAKE.finditer(text))
    return {
        "chars": len(text),
        "tokens": len(tokens),
        "symbol_ratio": symbols / n_visible,
        "digit_ratio": sum(1 for ch in visible if ch.isdigit()) / n_visible,
        "duplicate_line_share": dup_lines,
        "duplicate_line_char_share": dup_line_chars,
        "top_2gram_share": top_ngram_share(tokens, 2 * scale),
        "top_3gram_share": top_ngram_share(tokens, 3 * scale),
        "top_4gram_share": top_ngram_share(tokens, 4 * scale),
        "mojibake_share": mojibake / max(len(text), 1),
    }


def _share(description: str, default: float) -> Any:
    return pydantic.Field(default=default, ge=0, le=1, description=description)


class Quality:
    """Removes items that are too short or long, mostly symbols or digits, repetitive or garbled."""

    name: ClassVar[str] = "quality"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of the `quality` operator (a limit of 1.0 turns a ratio check off)."""

        model_config = pydantic.ConfigDict(extra="forbid")
        min_chars: int = pydantic.Field(
            default=10, ge=0, description="Fewest characters an item may have."
        )
        max_chars: int | None = pydantic.Field(
            default=None, ge=1, description="Most characters an item may have; null: no limit."
        )
        max_symbol_ratio: float = _share(
            "Most symbols (#, *, |, math, box drawing, emoji…) per non-space character.", 0.1
        )
        max_digit_ratio: float = _share("Most digits per non-space character.", 0.3)
        max_duplicate_line_share: float = _share(
            "Most non-blank lines that repeat an earlier line (Gopher: 0.30).", 0.3
        )
        max_duplicate_line_char_share: float = _share(
            "Most characters in lines that repeat an earlier line (Gopher: 0.20).", 0.2
        )
        cjk_ngram_scale: int = pydantic.Field(
            default=2,
            ge=1,
            description="In mostly-CJK text, n-grams are this many times longer (a Chinese "
            "word is about two characters; the n-gram limits are for words).",
        )
        min_tokens_for_repetition: int = pydantic.Field(
            default=100,
            ge=0,
            description="Check n-gram repetition only on items with at least this many tokens "
            "(a Latin word or one CJK character each); shorter text repeats by chance.",
        )
        max_top_2gram_share: float = _share(
            "Most text covered by the most frequent 2-gram (Gopher: 0.20).", 0.2
        )
        max_top_3gram_share: float = _share(
            "Most text covered by the most frequent 3-gram (Gopher: 0.18).", 0.18
        )
        max_top_4gram_share: float = _share(
            "Most text covered by the most frequent 4-gram (Gopher: 0.16).", 0.16
        )
        max_mojibake_share: float = _share(
            "Most characters in mojibake (Ã©, â€™, 锟斤拷, U+FFFD).", 0.01
        )

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or self.Params()

    def check(self, measures: dict[str, float]) -> str | None:
        """The reason the measures fail a limit (the first, in a fixed order), or None."""
        p = self.params
        chars = int(measures["chars"])
        if chars < p.min_chars:
            return f"too_short: {chars} chars < min_chars={p.min_chars}"
        if p.max_chars is not None and chars > p.max_chars:
            return f"too_long: {chars} chars > max_chars={p.max_chars}"
        limits = [
            ("mojibake", "mojibake_share", "max_mojibake_share"),
            ("symbols", "symbol_ratio", "max_symbol_ratio"),
            ("digits", "digit_ratio", "max_digit_ratio"),
            ("duplicate_lines", "duplicate_line_share", "max_duplicate_line_share"),
            ("duplicate_lines", "duplicate_line_char_share", "max_duplicate_line_char_share"),
            ("repetition", "top_2gram_share", "max_top_2gram_share"),
            ("repetition", "top_3gram_share", "max_top_3gram_share"),
            ("repetition", "top_4gram_share", "max_top_4gram_share"),
        ]
        if measures["tokens"] < p.min_tokens_for_repetition:
            limits = limits[:-3]
        for category, measure_name, limit_name in limits:
            value, limit = measures[measure_name], getattr(p, limit_name)
            if value > limit:
                return f"{category}: {measure_name} {value:.3f} > {limit_name}={limit}"
        return None

    def process(self, item: Item) -> Item | Rejection:
        """The item with `meta["quality"]` set, or a Rejection naming the broken limit."""
        measures = measure(item.text, self.params.cjk_ngram_scale)
        reason = self.check(measures)
        if reason is not None:
            return Rejection(item=item, operator=self.name, reason=reason)
        rounded = {k: v if isinstance(v, int) else round(v, 4) for k, v in measures.items()}
        return dataclasses.replace(item, meta={**item.meta, self.name: rounded})
