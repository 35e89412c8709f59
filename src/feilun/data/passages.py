"""Passages of documents, and the checks that a question or answer is grounded in one.

A passage is about one topic (a heading with its text, a few Chinese articles, joined
paragraphs); a sentence is the unit an extractive answer is snapped to. Every span satisfies
`text[start:end] == piece`, with no spaces at its edges.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from feilun.core.errors import ConfigError
from feilun.core.records import Document
from feilun.data.operators.language import ENGLISH_WORDS, count_scripts

MIN_PASSAGE_CHARS = 40  # a lone heading or "第一条" cannot carry a question

_HEADING = re.compile(r"#{1,6}\s")
_ARTICLE = re.compile(r"第[一二三四五六七八九十百千零〇两\d]+条")
_SENTENCE_END = re.compile(r"[。！？；]+[”」』）)]*|[.!?;]+[\"')\]]*(?=\s)")
# A sentence: up to a sentence end (a '.' only before a space or the end) or a line break.
_SENTENCE = re.compile(r"(?:[^\n。！？；.!?;]|[.!?;](?=\S))+(?:[。！？；]+[”」』）)]*|[.!?;]+)?")


@dataclass(frozen=True)
class Passage:
    """A span of one Document: `document.text[start:end] == text`."""

    document: Document
    start: int
    end: int
    text: str
    language: str  # "zh" or "en": picks the template
    page: int | None = None


def split_passages(text: str, min_chars: int = 300, max_chars: int = 800) -> list[tuple[int, int]]:
    """(start, end) spans of passages of about `min_chars`-`max_chars` characters.

    A heading starts a passage and stays with the text under it (which may take the passage
    past `max_chars` by the heading's length); a Chinese article (`第十二条 …`) starts one once
    the current passage has `min_chars`; paragraphs are joined up to `max_chars`, and a longer
    paragraph is cut at sentence ends. Spans exclude the spaces at their edges.
    """
    if not 0 < min_chars <= max_chars:
        raise ConfigError(
            f"passage sizes min_chars={min_chars}, max_chars={max_chars} are not 0 < min <= max",
            "pass a positive min_chars no larger than max_chars",
        )
    spans: list[tuple[int, int]] = []
    start, end, has_body = -1, 0, False
    for unit_start, unit_end, kind in _units(text, max_chars):
        is_break = kind == "heading" or (kind == "article" and end - start >= min_chars)
        if has_body and (is_break or unit_end - start > max_chars):
            spans.append((start, end))
            start, has_body = -1, False
        start = unit_start if start < 0 else start
        end, has_body = unit_end, has_body or kind != "heading"
    if has_body:
        spans.append((start, end))
    return [(s, e) for s, e in spans if e - s >= MIN_PASSAGE_CHARS]


def _units(text: str, max_chars: int) -> list[tuple[int, int, str]]:
    """Headings, article starts and paragraphs as (start, end, kind), each <= max_chars."""
    units: list[list[Any]] = []
    offset, is_open = 0, False
    for line in text.splitlines(keepends=True):
        line_start, offset = offset, offset + len(line)
        stripped = line.strip()
        if stripped:
            start = line_start + len(line) - len(line.lstrip())
            end = line_start + len(line.rstrip())
            kind = "heading" if _HEADING.match(stripped) else ""
            kind = kind or ("article" if _ARTICLE.match(stripped) else "")
            if not kind and is_open:
                units[-1][1] = end  # the next line of the same paragraph
            else:
                units.append([start, end, kind or "paragraph"])
        is_open = bool(stripped) and kind != "heading"
    out = []
    for start, end, kind in units:
        while end - start > max_chars:  # cut at the last sentence end (else space) that fits
            window = text[start : start + max_chars]
            cut = max([m.end() for m in _SENTENCE_END.finditer(window)] or [0])
            cut = cut if cut > max_chars // 3 else window.rfind(" ") + 1
            cut = cut if cut > max_chars // 3 else max_chars
            out.append((start, start + len(window[:cut].rstrip()), kind))
            start += cut + len(text[start + cut : end]) - len(text[start + cut : end].lstrip())
            kind = "paragraph"
        out.append((start, end, kind))
    return out


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of `text`, headings left out.

    A sentence ends at a Chinese sentence mark, a `.!?;` before a space, or a line break, so a
    list item `(2) the nature of …;` is a sentence of its own.
    """
    spans = []
    for match in _SENTENCE.finditer(text):
        piece = match.group()
        start = match.start() + len(piece) - len(piece.lstrip())
        end = match.start() + len(piece.rstrip())
        if end > start and not _HEADING.match(text[start:end]):
            spans.append((start, end))
    return spans


def passage_language(text: str) -> str:
    """`zh` when Han characters carry most of the letters (one weighs three Latin), else `en`."""
    scripts = count_scripts(text)
    return "zh" if scripts.han and scripts.han * 3 >= scripts.latin else "en"


def document_passages(
    documents: Sequence[Document],
    min_chars: int = 300,
    max_chars: int = 800,
    language: str = "auto",
) -> list[Passage]:
    """Every passage of the documents, in document order then text order.

    `language` is each passage's own ("auto") or forces "zh" or "en" on all of them.
    """
    passages = []
    for document in documents:
        page_starts = document.meta.get("page_starts") or []
        for start, end in split_passages(document.text, min_chars, max_chars):
            text = document.text[start:end]
            passage_lang = passage_language(text) if language == "auto" else language
            page = (bisect.bisect_right(page_starts, start) or None) if page_starts else None
            passages.append(Passage(document, start, end, text, passage_lang, page))
    return passages


# -- grounding -----------------------------------------------------------------------------

#: Why `check_question` or `ground_answer` rejects a candidate: reason → what it means.
GROUNDING_REASONS = {
    "empty_question": "a question with no words",
    "not_a_question": "no question mark or question word",
    "wrong_language": "the question is not in the passage's language",
    "off_topic": "too few of the question's content words are in the passage",
    "question_copies_passage": "the question is a sentence of the passage",
    "duplicate": "the same question was kept already",
    "empty_answer": "the reply held no answer",
    "answer_repeats_question": "the answer is the question again",
    "ungrounded": "too little of the answer is in the passage, and no sentence of it is",
    "unanchored": "no sentence of the passage holds both the question's and the answer's words",
}
MIN_EVIDENCE = 0.5  # of the question's and of the answer's own content words, in one sentence
MIN_EVIDENCE_WORDS = 2  # "What is Chapter 34?" shares one word with too many sentences
_HAN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_TOKEN = re.compile(rf"{_HAN}|[^\W_]+")
_is_han = re.compile(_HAN).fullmatch
_INTERROGATIVE = re.compile(
    r"[?？]|什么|哪|谁|何|几|多少|怎|吗|是否|^(?:what|which|who|whom|whose|when|where|why|how|"
    r"is|are|was|were|do|does|did|can|could|should|shall|may|must|will|would|has|have)\b",
    re.IGNORECASE,
)
# Words that say nothing about a passage: "What is the text of the document?" is off topic.
_FUNCTION_WORDS = ENGLISH_WORDS | set(
    "的是了在有和与及或个这那些么为之其中上下对于由被将把所者吗呢哪谁何几怎什"
)
_FUNCTION_WORDS |= {"text", "passage", "document", "article", "question", "answer"}


def tokens(text: str) -> list[str]:
    """Han characters one by one and other words whole, NFKC-normalised and lower-cased."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def support(answer: str, passage: str) -> float:
    """Share of the answer's token bigrams (its token, if only one) that occur in the passage."""
    words, source = tokens(answer), tokens(passage)
    if len(words) < 2:
        return float(bool(words) and words[0] in source)
    known = set(itertools.pairwise(source))
    return sum(gram in known for gram in itertools.pairwise(words)) / (len(words) - 1)


def check_question(question: str, passage: Passage, seen: set[str]) -> str | None:
    """Why the question is rejected before it is answered, or None to answer it."""
    words = tokens(question)
    content = [w for w in words if w not in _FUNCTION_WORDS]
    in_passage = set(tokens(passage.text))
    if not words:
        return "empty_question"
    if not _INTERROGATIVE.search(question.strip()):
        return "not_a_question"
    if passage_language(question) != passage.language:
        return "wrong_language"
    if not content or sum(w in in_passage for w in content) / len(content) < 0.5:
        return "off_topic"
    if len(words) >= 8 and support(question, passage.text) == 1.0:
        return "question_copies_passage"
    return "duplicate" if "".join(words) in seen else None


def check_answer(
    question: str, answer: str, passage: Passage, min_support: float
) -> tuple[str | None, float]:
    """Why the answer is rejected (None to keep the pair), and its support in the passage."""
    words = tokens(answer)
    score = support(answer, passage.text)
    if not words:
        return "empty_answer", score
    if words == tokens(question):
        return "answer_repeats_question", score
    return ("ungrounded" if score < min_support else None), score


@dataclass(frozen=True)
class Answer:
    """The answer a kept pair gets: the model's words, or the passage sentence they point at."""

    text: str
    mode: Literal["generated", "extractive"]
    support: float
    span: tuple[int, int] | None = None  # of an extractive answer, in the passage text


def ground_answer(
    question: str, answer: str, passage: Passage, min_support: float
) -> tuple[str | None, Answer]:
    """Why the model's answer is rejected (None to keep the pair), and the answer to keep.

    Every kept answer is anchored: one passage sentence holds the question and the answer's own
    words (`snap_answer`), so restating the question beside words from elsewhere is not enough.
    The answer kept is the model's words when the passage supports them, else that sentence.
    """
    reason, score = check_answer(question, answer, passage, min_support)
    span = snap_answer(question, answer, passage) if reason in (None, "ungrounded") else None
    if span is None:
        return reason or "unanchored", Answer(answer, "generated", score)
    if reason is None:
        return None, Answer(answer, "generated", score)
    text = passage.text[span[0] : span[1]]
    return None, Answer(text, "extractive", support(text, passage.text), span)


def snap_answer(question: str, answer: str, passage: Passage) -> tuple[int, int] | None:
    """The span, in the passage text, of the sentence the model's answer points at, or None.

    A sentence qualifies when it holds at least half of the question's content words and half
    of the answer's own ones (those not in the question), two of each at least: the answer must
    bring words of that sentence, not only repeat the question. The most of both wins.
    """
    asked = _content(question)
    brought = _content(answer) - asked
    best, best_score = None, 0.0
    for start, end in split_sentences(passage.text):
        words = _content(passage.text[start:end])
        hits = len(asked & words), len(brought & words)
        if min(hits) < MIN_EVIDENCE_WORDS:
            continue
        shares = hits[0] / len(asked), hits[1] / len(brought)
        if min(shares) >= MIN_EVIDENCE and sum(shares) > best_score:
            best, best_score = (start, end), sum(shares)
    return best


def _content(text: str) -> set[str]:
    """Content words: English ones cut to 6 letters, Chinese ones as character pairs.

    Cut, `inspect` matches `inspection`; a single Chinese character says little.
    """
    words = tokens(text)
    found = {w[:6] for w in words if w not in _FUNCTION_WORDS and not _is_han(w)}
    found.update(
        first + second
        for first, second in itertools.pairwise(words)
        if _is_han(first) and _is_han(second) and not {first, second} & _FUNCTION_WORDS
    )
    return found
