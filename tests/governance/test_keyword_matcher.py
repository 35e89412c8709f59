"""The lexicon's matcher (feilun.governance.lexicon.KeywordMatcher) as any word list uses it.

Moved from the data stage's own matcher, which it replaced: the same cases, against an
independent `str.find` reference on a real lexicon and real text.
"""

from __future__ import annotations

import json
import pickle
import random
import time
from pathlib import Path

from feilun.governance.lexicon import Entry, KeywordMatcher, Lexicon, Match, fold_case

DATA = Path("../shared/data")
K = "keywords"


def build(terms: list[str], use_word_boundaries: bool = True) -> KeywordMatcher:
    return KeywordMatcher(Lexicon(tuple(Entry(t, K) for t in terms)), use_word_boundaries)


def overlapping(matcher: KeywordMatcher, text: str) -> set[tuple[int, int, str]]:
    return {(m.start, m.end, m.term) for m in matcher.scan(fold_case(text))[0]}


def lexicon() -> list[str]:
    with (DATA / "sensitive-lexicon-zh" / "words.jsonl").open(encoding="utf-8") as f:
        return sorted({json.loads(line)["word"] for line in f})


def corpus() -> str:
    docs = sorted((DATA / "industry" / "docs").rglob("*.md"))
    return "\n".join(p.read_text(encoding="utf-8") for p in docs)


def naive_find(terms: list[str], text: str) -> set[tuple[int, int]]:
    """Every occurrence of every term, by str.find — no automaton, no word boundaries."""
    folded = fold_case(text)
    spans = set()
    for term in {fold_case(t) for t in terms if t}:
        start = folded.find(term)
        while start != -1:
            spans.add((start, start + len(term)))
            start = folded.find(term, start + 1)
    return spans


def test_finds_chinese_and_english_terms_with_spans() -> None:
    text = "储存炸药的PIPELINE与燃气管道"
    found = build(["炸药", "Pipeline", "燃气"]).find(text)
    assert found == [Match(2, 4, "炸药", K), Match(5, 13, "Pipeline", K), Match(14, 16, "燃气", K)]
    assert [text[m.start : m.end] for m in found] == ["炸药", "PIPELINE", "燃气"]


def test_leftmost_longest_without_overlaps_or_all_with_them() -> None:
    matcher = build(["炸药", "炸药包", "药包", "he", "she", "hers"])
    assert [m.term for m in matcher.find("炸药包")] == ["炸药包"]
    assert overlapping(matcher, "炸药包") == {(0, 2, "炸药"), (0, 3, "炸药包"), (1, 3, "药包")}
    # Classic Aho-Corasick case: the failure links must find "he" inside "she" and "hers".
    loose = build(["he", "she", "hers"], use_word_boundaries=False)
    assert {(s, e) for s, e, _ in overlapping(loose, "ushers")} == {(1, 4), (2, 4), (2, 6)}


def test_latin_terms_match_whole_words_only() -> None:
    assert build(["ass", "gas"]).find("class of gases, natural gas.") == [Match(24, 27, "gas", K)]
    assert [m.start for m in build(["ass"], use_word_boundaries=False).find("class")] == [2]
    # Chinese terms have no word boundaries, and a Latin term next to Chinese text is a word.
    assert build(["TNT", "爆炸"]).find("含TNT的爆炸物") == [
        Match(1, 4, "TNT", K),
        Match(5, 7, "爆炸", K),
    ]


def test_case_folding_keeps_offsets() -> None:
    text = "İstanbul GAS"  # "İ".lower() is two characters
    assert len(fold_case(text)) == len(text)
    assert build(["gas"]).find(text) == [Match(9, 12, "gas", K)]


def test_blank_and_duplicate_terms() -> None:
    matcher = build(["", "Gas", "gas", "GAS"])
    assert len(matcher) == 1
    assert matcher.find("gas") == [Match(0, 3, "Gas", K)]
    assert build([]).find("anything") == []


def test_agrees_with_naive_search_on_real_lexicon_and_text() -> None:
    terms = lexicon()
    random.Random(7).shuffle(terms)
    terms = [*terms[:3000], "燃气", "安全生产", "pipeline", "hazardous material"]
    text = corpus()
    found = {(s, e) for s, e, _ in overlapping(build(terms, use_word_boundaries=False), text)}
    expected = naive_find(terms, text)
    assert len(expected) > 1000
    assert found == expected


def test_survives_pickle() -> None:
    matcher = build(["炸药", "gas"])
    clone = pickle.loads(pickle.dumps(matcher))
    assert clone.find("炸药 gas") == matcher.find("炸药 gas")


def test_ten_thousand_terms_over_a_megabyte_is_fast() -> None:
    terms = lexicon()
    random.Random(0).shuffle(terms)
    text = corpus()
    while len(text) < 1_000_000:
        text += text
    text = text[:1_000_000]
    started = time.perf_counter()
    found = build(terms[:10_000]).find(text)
    elapsed = time.perf_counter() - started
    assert found  # the lexicon has ordinary words (网络, 政府…) that the laws use
    assert elapsed < 5.0, f"{elapsed:.2f}s"
