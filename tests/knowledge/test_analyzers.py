"""The analyzer: English like Lucene's EnglishAnalyzer (as bm25s), Chinese by jieba, terms."""

from __future__ import annotations

import bm25s
import Stemmer

from feilun.knowledge.analyzers import Analyzer, has_cjk, split_terms


def test_english_matches_bm25s_tokenizer() -> None:
    text = (
        "The Secretary shall promulgate occupational safety and health standards; employers comply."
    )
    stemmer = Stemmer.Stemmer("english")
    tokenized = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
    inverse = {i: t for t, i in tokenized.vocab.items()}
    assert Analyzer().analyze(text) == [inverse[i] for i in tokenized.ids[0]]


def test_chinese_is_segmented_and_punctuation_dropped() -> None:
    terms = Analyzer().analyze("管道燃气经营者应当提前48小时通知用户。")
    assert terms == ["管道", "燃气", "经营者", "应当", "提前", "48", "小时", "通知", "用户"]


def test_mixed_text_and_full_width_forms() -> None:
    terms = Analyzer().analyze("城镇燃气 uses ＰＥ１００ pipes, 第十二条")
    assert terms == ["城镇", "燃气", "use", "pe100", "pipe", "第十二条"]


def test_domain_terms_stay_whole_in_their_own_analyzer_only() -> None:
    with_terms = Analyzer(["燃气经营者", "PE-100", "GB 50028"])
    text = "管道燃气经营者 must use PE-100 pipes per GB 50028; a PE pipe"
    assert with_terms.analyze(text) == [
        "管道", "燃气经营者", "must", "use", "pe-100", "pipe", "per", "gb 50028", "pe", "pipe",
    ]  # fmt: skip
    # The default analyzer is untouched: the terms live in a private copy of jieba's dictionary.
    assert Analyzer().analyze("管道燃气经营者")[1:] == ["燃气", "经营者"]


def test_helpers() -> None:
    assert has_cjk("abc 燃气") and not has_cjk("abc é ü ∑") and not has_cjk("")
    assert split_terms([" 燃气 ", "PE-100", "燃气", ""]) == (["燃气"], ["PE-100"])
