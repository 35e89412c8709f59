"""The keyword lexicon: a user-editable file of terms, each with a TC260 risk category.

File format (UTF-8), one entry per line: a category (risk id such as `terrorism_extremism`,
or code such as `A.1.4`), whitespace, then the term, which may contain spaces. A line whose
first non-blank character is `#` is a comment; blank lines are skipped. The category `allow`
marks an exception: a hit that overlaps an allowed term is dropped (`allow kill the process`).
A malformed line fails the whole file with its line number, so a lexicon is never half-loaded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from feilun.core.errors import ConfigError
from feilun.core.files import write_atomically
from feilun.governance.taxonomy import RISK_BY_ID, known_names, resolve_risk

ALLOW = "allow"
DEFAULT_LEXICON = Path(__file__).with_name("default_lexicon.txt")


@dataclass(frozen=True)
class Entry:
    """One lexicon term and the risk id (or `allow`) it stands for."""

    term: str
    category: str


@dataclass(frozen=True)
class Lexicon:
    """Terms with their categories, in file order; the first entry of a term wins."""

    entries: tuple[Entry, ...]

    def __len__(self) -> int:
        return len(self.entries)

    def counts(self) -> dict[str, int]:
        """Number of terms per category."""
        return dict(Counter(e.category for e in self.entries))

    def merged(self, other: Lexicon) -> Lexicon:
        """These entries plus those of `other` whose terms are not here yet."""
        seen = {fold_case(e.term) for e in self.entries}
        extra = tuple(e for e in other.entries if fold_case(e.term) not in seen)
        return Lexicon(self.entries + extra)


def parse_lexicon(text: str, source: str = "<lexicon>") -> Lexicon:
    """Entries of a lexicon file's text; ConfigError naming `source:line` on a bad line."""
    entries: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise ConfigError(
                f"{source}:{number}: expected `<category> <term>`, got {line!r}",
                "start the line with a category (e.g. `terrorism_extremism 制作炸弹`) or "
                "comment it out with `#`",
            )
        category, term = parts[0], parts[1].strip()
        if category != ALLOW:
            if category not in RISK_BY_ID and not _is_risk_code(category):
                raise ConfigError(
                    f"{source}:{number}: unknown category {category!r}",
                    f"use `allow` or a TC260 risk: {known_names(include_groups=False)}",
                )
            category = resolve_risk(category, where=f"{source}:{number}")
        entries.append(Entry(term, category))
    return Lexicon(tuple(entries))


def _is_risk_code(name: str) -> bool:
    return any(r.code == name for r in RISK_BY_ID.values())


def read_lexicon(path: Path | str) -> Lexicon:
    """The lexicon in a file; ConfigError when it cannot be read or has a bad line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read the lexicon {str(path)!r}: {getattr(e, 'strerror', None) or e}",
            "give a UTF-8 text file with one `<category> <term>` per line",
        ) from e
    return parse_lexicon(text, source=str(path))


def read_word_list(path: Path | str, category: str) -> Lexicon:
    """A plain word list (one term per line, `#` comments) with one category for every term."""
    risk = resolve_risk(category, where="--category")
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read the word list {str(path)!r}: {getattr(e, 'strerror', None) or e}",
            "give a UTF-8 text file with one term per line",
        ) from e
    terms = (line.strip() for line in lines)
    return Lexicon(tuple(Entry(t, risk) for t in terms if t and not t.startswith("#")))


def format_lexicon(lexicon: Lexicon) -> str:
    """The file text of a lexicon (entries grouped by category, in taxonomy order)."""
    order = {risk: i for i, risk in enumerate([ALLOW, *RISK_BY_ID])}
    lines = ["# Feilun safety lexicon: `<category> <term>` per line (docs/governance.md)"]
    for entry in sorted(lexicon.entries, key=lambda e: order[e.category]):
        lines.append(f"{entry.category} {entry.term}")
    return "\n".join(lines) + "\n"


def write_lexicon(lexicon: Lexicon, path: Path) -> None:
    """Write a lexicon file atomically (temporary file, then rename)."""
    write_atomically(path, format_lexicon(lexicon))


def default_lexicon() -> Lexicon:
    """The small lexicon Feilun ships (written by us; extend it with `feilun safety lexicon`)."""
    return read_lexicon(DEFAULT_LEXICON)


_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_HAS_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")


def fold_case(text: str) -> str:
    """Lower case and full-width ASCII made half-width, keeping the length (offsets stay valid)."""
    # str.translate is slow; most text has no full-width letters to translate.
    folded = text.translate(_FULL_WIDTH) if _HAS_FULL_WIDTH.search(text) else text
    lowered = folded.lower()
    if len(lowered) == len(folded):
        return lowered
    # Rare: a character whose lower case is longer (İ → i̇); keep those as they are.
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in folded)


def is_word_char(ch: str) -> bool:
    """Latin letters and digits: a Latin term must not continue into one of these."""
    return ch.isascii() and ch.isalnum()


@dataclass(frozen=True)
class Match:
    """`text[start:end]` matched `term` of `category`."""

    start: int
    end: int
    term: str
    category: str


class KeywordMatcher:
    """An Aho-Corasick automaton (pyahocorasick) over a lexicon's terms.

    Chinese terms match anywhere; Latin letters match case-insensitively, and a term that
    starts or ends with a Latin letter or digit matches only at word boundaries there (`ass`
    is not found in `class`) unless `use_word_boundaries` is off.
    """

    def __init__(self, lexicon: Lexicon, use_word_boundaries: bool = True) -> None:
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        self.entries: list[Entry] = []
        self.max_term_chars = 0
        for entry in lexicon.entries:
            key = fold_case(entry.term)
            if key and key not in self.automaton:
                bounds = (
                    use_word_boundaries and is_word_char(key[0]),
                    use_word_boundaries and is_word_char(key[-1]),
                )
                self.automaton.add_word(key, (len(self.entries), len(key), *bounds))
                self.entries.append(entry)
                self.max_term_chars = max(self.max_term_chars, len(key))
        if self.entries:
            self.automaton.make_automaton()

    def __len__(self) -> int:
        return len(self.entries)

    def scan(self, folded: str, is_open_end: bool = False) -> tuple[list[Match], int]:
        """Hits in already-folded text (overlaps and allow terms included), by start.

        With `is_open_end` (more text will follow) a Latin hit ending at the very end is not
        decided yet; the second value is the start of the earliest such hit (else len).
        """
        if not self.entries:
            return [], len(folded)
        size = len(folded)
        pending = size
        found: list[Match] = []
        for last, (index, length, left, right) in self.automaton.iter(folded):
            start, end = last + 1 - length, last + 1
            if left and start > 0 and is_word_char(folded[start - 1]):
                continue
            if right and end < size and is_word_char(folded[end]):
                continue
            if right and is_open_end and end == size:
                pending = min(pending, start)
                continue
            entry = self.entries[index]
            found.append(Match(start, end, entry.term, entry.category))
        found.sort(key=lambda m: (m.start, -m.end))
        return found, pending

    def find(self, text: str) -> list[Match]:
        """Risk hits in `text`: leftmost-longest, non-overlapping, none inside an allowed term."""
        found, _ = self.scan(fold_case(text))
        return select_hits(found)

    def longest_open_prefix(self, folded: str) -> int:
        """Length of the longest suffix of `folded` that begins some term (to hold back)."""
        for size in range(min(len(folded), self.max_term_chars - 1), 0, -1):
            if self.automaton.match(folded[-size:]):
                return size
        return 0


def select_hits(found: Iterable[Match]) -> list[Match]:
    """Drop hits that overlap an allowed term, then keep leftmost-longest non-overlapping ones."""
    found = list(found)
    allowed = [(m.start, m.end) for m in found if m.category == ALLOW]
    kept: list[Match] = []
    end = 0
    for match in found:
        if match.category == ALLOW or match.start < end:
            continue
        if any(a < match.end and match.start < b for a, b in allowed):
            continue
        kept.append(match)
        end = match.end
    return kept
