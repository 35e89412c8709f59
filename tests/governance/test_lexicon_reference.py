"""The lexicon matcher against references: Python's `re` and the shared 15k-term word list."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from feilun.governance.lexicon import Entry, KeywordMatcher, Lexicon, fold_case, read_word_list

SHARED = Path("../shared/data/sensitive-lexicon-zh")


def _shared_terms() -> list[str]:
    rows = [json.loads(line) for line in (SHARED / "words.jsonl").open(encoding="utf-8")]
    terms = {r["word"].strip() for r in rows if "+" not in r["word"]}
    return sorted(t for t in terms if t and len(fold_case(t)) == len(t))


@pytest.fixture(scope="module")
def terms() -> list[str]:
    return _shared_terms()


def _regex(terms: list[str]) -> re.Pattern[str]:
    """Leftmost-longest by trying longer terms first; Latin ends need a word boundary."""
    parts = []
    for term in sorted(terms, key=len, reverse=True):
        left = r"(?<![A-Za-z0-9])" if term[0].isascii() and term[0].isalnum() else ""
        right = r"(?![A-Za-z0-9])" if term[-1].isascii() and term[-1].isalnum() else ""
        parts.append(left + re.escape(term) + right)
    return re.compile("|".join(parts), re.IGNORECASE)


def test_matches_equal_a_regex_alternation(terms: list[str]) -> None:
    rng = random.Random(20250601)
    chosen = rng.sample(terms, 1500)
    folded = {fold_case(t): t for t in chosen}  # one spelling per case-folded term
    chosen = sorted(folded.values())
    matcher = KeywordMatcher(Lexicon(tuple(Entry(t, "other_prohibited") for t in chosen)))
    pattern = _regex(chosen)
    filler = ["的", "天气", "很好", " ", "a", "X", "1", "，", "Report", "数据"]
    for _ in range(30):
        pieces = [rng.choice(chosen if rng.random() < 0.3 else filler) for _ in range(60)]
        text = "".join(p.upper() if rng.random() < 0.2 else p for p in pieces)
        ours = [(m.start, m.end) for m in matcher.find(text)]
        reference = [(m.start(), m.end()) for m in pattern.finditer(text)]
        assert ours == reference, text


def test_the_shared_word_list_imports_and_matches_every_planted_term(
    terms: list[str], tmp_path: Path
) -> None:
    lexicon = read_word_list(SHARED / "original" / "零时-Tencent.txt", "A.1.8")
    assert len(lexicon) > 10_000
    big = Lexicon(tuple(Entry(t, "other_prohibited") for t in terms))
    matcher = KeywordMatcher(big.merged(lexicon))
    assert len(matcher) > 15_000
    planted = [t for t in terms if not t.isascii()][::700]
    text, spans = "", []
    for term in planted:
        text += "这是一段正常的说明，"
        spans.append((len(text), len(text) + len(term)))
        text += term + "。"
    found = matcher.find(text)
    exact = {(m.start, m.end) for m in found}
    # Each planted term is found, or a longer term overlapping it won (leftmost-longest).
    for start, end in spans:
        assert (start, end) in exact or any(m.start < end and start < m.end for m in found)
    assert sum((s, e) in exact for s, e in spans) >= 0.9 * len(spans)
