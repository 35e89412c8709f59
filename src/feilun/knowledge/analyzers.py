"""Text → index terms, for Chinese, English and text that mixes them.

Runs of CJK characters are segmented by jieba (with the knowledge base's own domain terms
added to a private copy of its dictionary); everything else goes through the standard English
analyzer: NFKC, lower case, Lucene's English stopwords, Snowball stemming (PyStemmer). The
same analyzer must read the chunks and the queries of one index, so a KB stores its terms.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

# The stop set of Lucene's EnglishAnalyzer (and of bm25s's "en"), so scores stay comparable.
# fmt: off
ENGLISH_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))
# fmt: on
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A Chinese run, with the digits glued to it ("第5条", "5万元"): jieba reads those whole.
_CJK_RUN = re.compile(f"[0-9]*(?:[{_CJK}]+[0-9]*)+")
# A word: letters, digits or underscores; never CJK (those runs go to jieba).
_WORD = re.compile(f"[^\\W{_CJK}]+")
_HAS_WORD_CHAR = re.compile(r"\w")
_jieba_lock = threading.Lock()


def has_cjk(text: str) -> bool:
    """Whether `text` holds any CJK ideograph."""
    # isascii() and max() run at C speed and rule out most other text before the regex does.
    if not text or text.isascii() or max(text) < "\u3400":
        return False
    return _CJK_RUN.search(text) is not None


def split_terms(terms: Iterable[str]) -> tuple[list[str], list[str]]:
    """Domain terms as (Chinese terms for jieba's dictionary, other terms kept whole)."""
    chinese: list[str] = []
    other: list[str] = []
    for term in dict.fromkeys(t.strip() for t in terms):
        if term:
            (chinese if has_cjk(term) else other).append(term)
    return chinese, other


class Analyzer:
    """Turns text into index terms; one instance per set of domain terms, safe across threads."""

    def __init__(self, terms: Sequence[str] = ()) -> None:
        import Stemmer  # PyStemmer

        self.terms = tuple(terms)
        chinese, other = split_terms(terms)
        self._chinese_terms = chinese
        self._segmenter: Any = None  # jieba, loaded with the first Chinese text
        self._stemmer = Stemmer.Stemmer("english")
        self._table: dict[str, str] = {}  # word → term ("" when dropped), filled as met
        # Latin-script terms (part numbers, "GB 50028") match before words, longest first.
        self._protected = {_normalize(t).lower() for t in other}
        alternatives = [
            rf"(?<!\w){re.escape(t)}(?!\w)" for t in sorted(self._protected, key=len, reverse=True)
        ]
        if alternatives:
            self._word = re.compile("|".join([*alternatives, _WORD.pattern]))
        else:
            self._word = _WORD

    def analyze(self, text: str) -> list[str]:
        """The index terms of `text`, in order (repeats kept: they are term frequencies)."""
        text = _normalize(text)
        if not has_cjk(text):
            return self._english(text)
        terms: list[str] = []
        position = 0
        for run in _CJK_RUN.finditer(text):
            terms += self._english(text[position : run.start()])
            terms += self._chinese(run.group())
            position = run.end()
        terms += self._english(text[position:])
        return terms

    def analyze_many(self, texts: Iterable[str]) -> list[list[str]]:
        """`analyze` of each text."""
        return [self.analyze(text) for text in texts]

    def _english(self, text: str) -> list[str]:
        if not text:
            return []
        words = self._word.findall(text.lower())
        table = self._table
        missing = set(words).difference(table)
        if missing:  # words not seen before: stemmed (in one call) or dropped, once
            kept = [w for w in missing if w not in self._protected and _is_indexed(w)]
            table.update(dict.fromkeys(missing, ""))
            table.update(zip(kept, self._stemmer.stemWords(kept), strict=True))
            table.update((w, w) for w in missing & self._protected)
        # filter/map run at C speed: several times faster than a comprehension here.
        return list(filter(None, map(table.__getitem__, words)))

    def _chinese(self, run: str) -> list[str]:
        segmenter = self._segmenter or self._load_segmenter()
        # Segmentation reads a shared dictionary; jieba's own caches make it safe to share.
        return [word for word in segmenter.lcut(run) if _HAS_WORD_CHAR.search(word)]

    def _load_segmenter(self) -> Any:
        with _jieba_lock:
            if self._segmenter is None:
                self._segmenter = _segmenter(self._chinese_terms)
        return self._segmenter


def _is_indexed(word: str) -> bool:
    """A lower-case word is indexed unless it is a stopword or a single character (as bm25s)."""
    return len(word) > 1 and word not in ENGLISH_STOPWORDS


def _normalize(text: str) -> str:
    # NFKC folds full-width letters and digits (ＰＥ１００ → PE100); ASCII needs nothing.
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _segmenter(terms: Sequence[str]) -> Any:
    """Jieba's default tokenizer, or a private copy of it that also knows `terms`."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.dt.check_initialized()
    if not terms:
        return jieba.dt
    # A copy of the loaded dictionary costs milliseconds; a fresh jieba.Tokenizer, seconds.
    private = jieba.Tokenizer()
    private.FREQ = dict(jieba.dt.FREQ)
    private.total = jieba.dt.total
    private.initialized = True
    for term in terms:
        private.add_word(term)
    logger.debug("jieba with %d domain terms", len(terms))
    return private
