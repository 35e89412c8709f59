"""Which passages an answer rests on, and which of its sentences none of them supports.

An answer sentence is supported by a passage when most of its index terms (the knowledge
base's analyzer: jieba words, stemmed English without stopwords) occur in that passage and
every number it states does too (regulations turn on "48 hours" and "$7,000"). The
passages a sentence cites explicitly (`[2]`) or that support it become the answer's citations;
sentences too short to judge (fewer than two terms) are neither.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from feilun.core.protocols import Citation, Grounding
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.search import ChunkHit

MIN_TERMS = 2  # a sentence with fewer index terms is not judged
QUOTE_CHARS = 240
_MARKER = re.compile(r"\[(\d{1,2})\]")
# A sentence: up to a Chinese or Latin sentence end (with closing quotes), or a line end.
_SENTENCE = re.compile(r"[^\n]+?(?:[。！？!?]+[”」』）)]*|\.+[\"')\]]*(?=\s|$)|(?=\n)|$)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SOURCE_SENTENCE = re.compile(r"[^。！？!?.;；\n]+[。！？!?.;；]?")


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk as numbered in the prompt, with its index terms."""

    number: int
    hit: ChunkHit
    terms: frozenset[str]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, without the spaces around it."""
    spans = []
    for match in _SENTENCE.finditer(text):
        piece = match.group()
        start = match.start() + len(piece) - len(piece.lstrip())
        end = match.start() + len(piece.rstrip())
        if end > start:
            spans.append((start, end))
    return spans


def support(terms: Sequence[str], passage: Passage) -> float:
    """Share of the distinct terms that occur in the passage."""
    distinct = set(terms)
    return len(distinct & passage.terms) / len(distinct) if distinct else 0.0


def numbers(text: str) -> set[str]:
    """The numbers written in `text`, without thousands separators (`7,000` → `7000`)."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def supports(sentence: str, terms: Sequence[str], passage: Passage, min_support: float) -> bool:
    """Whether `passage` holds enough of the sentence's terms and every number it states."""
    if support(terms, passage) < min_support:
        return False
    return numbers(sentence) <= numbers(passage.hit.text)


def ground(
    answer: str, passages: Sequence[Passage], analyzer: Analyzer, min_support: float
) -> tuple[Grounding, str]:
    """The answer's grounding, and its text with `[n]` markers when it cited nothing itself.

    A model that cites (`[1]`) keeps its own markers; otherwise each supported sentence gets
    the number of its best passage appended.
    """
    by_number = {p.number: p for p in passages}
    has_markers = any(int(n) in by_number for n in _MARKER.findall(answer))
    cited: dict[int, list[str]] = {}  # passage number → answer sentences it supports
    unsupported: list[str] = []
    checked = 0
    pieces, position = [], 0
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        plain = _MARKER.sub("", sentence).strip()
        terms = analyzer.analyze(plain)
        explicit = [by_number[int(n)] for n in _MARKER.findall(sentence) if int(n) in by_number]
        for passage in explicit:
            cited.setdefault(passage.number, []).append(plain)
        if len(set(terms)) < MIN_TERMS:
            continue
        checked += 1
        backing = [p for p in passages if supports(plain, terms, p, min_support)]
        if not backing:
            unsupported.append(plain)
            continue
        best = max(backing, key=lambda p: support(terms, p))
        cited.setdefault(best.number, []).append(plain)
        if not has_markers:
            pieces += [answer[position:end], f"[{best.number}]"]
            position = end
    citations = [_citation(by_number[n], cited[n], analyzer) for n in sorted(cited)]
    text = "".join([*pieces, answer[position:]])
    grounding = Grounding(
        citations=citations, unsupported_sentences=unsupported, checked_sentences=checked
    )
    return grounding, text


def trailing_markers(answer: str, grounding: Grounding) -> str:
    """`[1][3]` for a streamed answer that cited nothing itself (its text is already sent)."""
    if _MARKER.search(answer) or not grounding.citations:
        return ""
    return "".join(f"[{c.number}]" for c in grounding.citations)


def _citation(passage: Passage, sentences: Sequence[str], analyzer: Analyzer) -> Citation:
    hit = passage.hit
    return Citation(
        number=passage.number,
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        document=hit.document,
        title=hit.title,
        page=hit.page,
        heading_path=list(hit.heading_path),
        quote=quote(hit.text, sentences, analyzer),
        score=hit.score,
    )


def quote(text: str, sentences: Sequence[str], analyzer: Analyzer) -> str:
    """The sentence of `text` sharing the most terms with `sentences` (cut to QUOTE_CHARS)."""
    wanted = set(analyzer.analyze(" ".join(sentences)))
    candidates = [m.group().strip() for m in _SOURCE_SENTENCE.finditer(text)]
    candidates = [c for c in candidates if c] or [text.strip()]
    best = max(candidates, key=lambda c: len(wanted & set(analyzer.analyze(c))))
    return best if len(best) <= QUOTE_CHARS else best[: QUOTE_CHARS - 1] + "…"
