from __future__ import annotations

import json
import pickle
import random
import time
from pathlib import Path

from feilun.data.matching import Match, build_matcher, fold_case

DATA = Path("../shared/data")


def lexicon() -> list[str]:
    with (DATA / "sensitive-lexicon-zh" / "words.jsonl").open(encoding="utf-8") as f:
        return sorted({json.loads(line)["word"] for line in f})


def corpus() -> str:
    docs = sorted((DATA / "industry" / "docs").rglob("*.md"))
    return "\n".join(p.read_text(encoding="utf-8") for p in docs)


def naive_find(terms: list[str], text: str) -> set[tuple[int, int]]:
    """Every occurrence of every term, by str.find — no automaton, no word boundaries."""
    folded = text.lower()
    spans = set()
    for term in {t.strip().lower() for t in terms if t.strip()}:
        start = folded.find(term)
        while start != -1:
            spans.add((start, start + len(term)))
            start = folded.find(term, start + 1)
    return spans


def test_finds_chinese_and_english_terms_with_spans() -> None:
    matcher = build_matcher(["炸药", "Pipeline", "燃气"])
    text = "储存炸药的PIPELINE与燃气管道"
    found = matcher.find(text)
    assert found == [Match(2, 4, "炸药"), Match(5, 13, "Pipeline"), Match(14, 16, "燃气")]
    assert [text[m.start : m.end] for m in found] == ["炸药", "PIPELINE", "燃气"]


def test_leftmost_longest_without_overlaps_or_all_with_them() -> None:
    matcher = build_matcher(["炸药", "炸药包", "药包", "he", "she", "hers"])
    assert [m.term for m in matcher.find("炸药包")] == ["炸药包"]
    assert {(m.start, m.end, m.term) for m in matcher.find("炸药包", overlapping=True)} == {
        (0, 2, "炸药"),
        (0, 3, "炸药包"),
        (1, 3, "药包"),
    }
    # Classic Aho-Corasick case: the failure links must find "he" inside "she" and "hers".
    found = build_matcher(["he", "she", "hers"], use_word_boundaries=False).find(
        "ushers", overlapping=True
    )
    assert {(m.start, m.end) for m in found} == {(1, 4), (2, 4), (2, 6)}


def test_latin_terms_match_whole_words_only() -> None:
    matcher = build_matcher(["ass", "gas"])
    assert matcher.find("class of gases, natural gas.") == [Match(24, 27, "gas")]
    loose = build_matcher(["ass"], use_word_boundaries=False)
    assert [m.start for m in loose.find("class")] == [2]
    # Chinese terms have no word boundaries, and a Latin term next to Chinese text is a word.
    assert build_matcher(["TNT", "爆炸"]).find("含TNT的爆炸物") == [
        Match(1, 4, "TNT"),
        Match(5, 7, "爆炸"),
    ]


def test_case_folding_keeps_offsets() -> None:
    text = "İstanbul GAS"  # "İ".lower() is two characters
    assert len(fold_case(text)) == len(text)
    assert build_matcher(["gas"]).find(text) == [Match(9, 12, "gas")]


def test_blank_and_duplicate_terms() -> None:
    matcher = build_matcher(["", "  ", " Gas ", "gas", "GAS"])
    assert len(matcher) == 1
    assert matcher.find("gas") == [Match(0, 3, "Gas")]
    assert build_matcher([]).find("anything") == []


def test_agrees_with_naive_search_on_real_lexicon_and_text() -> None:
    terms = lexicon()
    random.Random(7).shuffle(terms)
    terms = [*terms[:3000], "燃气", "安全生产", "pipeline", "hazardous material"]
    text = corpus()
    matcher = build_matcher(terms, use_word_boundaries=False)
    found = {(m.start, m.end) for m in matcher.find(text, overlapping=True)}
    expected = naive_find(terms, text)
    assert len(expected) > 1000
    assert found == expected


def test_survives_pickle() -> None:
    matcher = build_matcher(["炸药", "gas"])
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
    matcher = build_matcher(terms[:10_000])
    found = matcher.find(text)
    elapsed = time.perf_counter() - started
    assert found  # the lexicon has ordinary words (网络, 政府…) that the laws use
    # Measured 0.45 s (build 0.21 s + scan 0.22 s) on a 2-core CPU; a set lookup over the
    # 42 distinct term lengths took 6.5 s on the same input.
    assert elapsed < 5.0, f"{elapsed:.2f}s"
