"""Multi-pattern term matching with an Aho-Corasick automaton.

Finds every term of a large list (10,000+ Chinese and English terms) in one pass over a text.
Latin letters match case-insensitively; a term that starts or ends with a Latin letter or digit
matches only at word boundaries (so `ass` is not found in `class`), Chinese terms match anywhere.
Spans always index the text as given. Stdlib only, so any stage can reuse it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Match:
    """One occurrence of a term: `text[start:end]` matched `term` (as it was given)."""

    start: int
    end: int
    term: str


def fold_case(text: str) -> str:
    """Lower-case `text` without changing its length, so offsets stay valid."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # Rare: a character whose lower case is longer (İ → i̇); keep those as they are.
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


class Matcher:
    """An Aho-Corasick automaton over a fixed list of terms. Build it with `build_matcher`."""

    def __init__(self, terms: Iterable[str], use_word_boundaries: bool = True) -> None:
        self.use_word_boundaries = use_word_boundaries
        self.terms: list[str] = []  # terms as given, deduplicated after case folding
        self._goto: list[dict[str, int]] = [{}]
        self._fail: list[int] = [0]
        self._out: list[tuple[int, ...]] = [()]  # term indexes ending at each state
        keys: dict[str, int] = {}
        for raw in terms:
            term = raw.strip()
            key = fold_case(term)
            if key and key not in keys:
                keys[key] = len(self.terms)
                self.terms.append(term)
                self._insert(key, keys[key])
        self._lengths = [len(t) for t in self.terms]
        self._bounded = [
            (
                use_word_boundaries and _is_word_char(t[0]),
                use_word_boundaries and _is_word_char(t[-1]),
            )
            for t in self.terms
        ]
        self._link()

    def __len__(self) -> int:
        return len(self.terms)

    def _insert(self, key: str, index: int) -> None:
        state = 0
        for ch in key:
            nxt = self._goto[state].get(ch)
            if nxt is None:
                nxt = len(self._goto)
                self._goto[state][ch] = nxt
                self._goto.append({})
                self._fail.append(0)
                self._out.append(())
            state = nxt
        self._out[state] = (*self._out[state], index)

    def _link(self) -> None:
        """Breadth-first failure links; each state's outputs include those of its fail chain."""
        queue = deque(self._goto[0].values())
        while queue:
            state = queue.popleft()
            for ch, nxt in self._goto[state].items():
                queue.append(nxt)
                fallback = self._fail[state]
                while fallback and ch not in self._goto[fallback]:
                    fallback = self._fail[fallback]
                target = self._goto[fallback].get(ch, 0)
                self._fail[nxt] = target if target != nxt else 0
                if self._out[self._fail[nxt]]:
                    self._out[nxt] = self._out[nxt] + self._out[self._fail[nxt]]

    def find(self, text: str, overlapping: bool = False) -> list[Match]:
        """Terms found in `text`, by start. By default leftmost-longest, non-overlapping."""
        found = self._scan(text)
        if overlapping:
            return found
        kept: list[Match] = []
        end = 0
        for match in found:
            if match.start >= end:
                kept.append(match)
                end = match.end
        return kept

    def _scan(self, text: str) -> list[Match]:
        goto, fail, out = self._goto, self._fail, self._out
        root = goto[0]
        lengths, bounded, terms = self._lengths, self._bounded, self.terms
        found: list[tuple[int, int, int]] = []
        state = 0
        folded = fold_case(text)
        for i, ch in enumerate(folded):
            if state == 0:
                state = root.get(ch, 0)
            else:
                while state and ch not in goto[state]:
                    state = fail[state]
                state = goto[state].get(ch, 0)
            if not out[state]:
                continue
            for index in out[state]:
                start = i + 1 - lengths[index]
                left, right = bounded[index]
                if left and start > 0 and _is_word_char(folded[start - 1]):
                    continue
                if right and i + 1 < len(folded) and _is_word_char(folded[i + 1]):
                    continue
                found.append((start, -(i + 1), index))
        found.sort()
        return [Match(start, -neg_end, terms[index]) for start, neg_end, index in found]


def build_matcher(terms: Iterable[str], use_word_boundaries: bool = True) -> Matcher:
    """A matcher for `terms` (blank ones ignored, duplicates after case folding merged)."""
    return Matcher(terms, use_word_boundaries=use_word_boundaries)
