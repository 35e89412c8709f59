"""The model writer's side of synthetic QA: its prompt templates, and parsing of its replies.

Small models answer in every shape (numbered lists, `Q:` labels, JSON, chatter around a quote);
the parsers take the questions and the answer out of them. Pure functions, no model here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from feilun.data.passages import passage_language

# -- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """How to ask for questions about a passage in one language, then for each answer.

    Two short steps rather than one call for whole pairs: measured on SmolLM2-135M, a small
    model almost never writes a whole pair, but answers a question from a passage. Asked to
    quote the passage it invents less than asked to answer (7 of 27 answers supported, not 5).
    """

    id: str
    language: str
    ask: str  # asks for {n} questions about {passage}
    answer: str  # asks for the answer to {question} from {passage}


TEMPLATES: dict[str, Template] = {
    "en": Template(
        id="qa-en-2",
        language="en",
        ask="Read the text and write {n} reading comprehension questions about it, one per "
        "line.\n\nText:\n{passage}\n\nQuestions:",
        answer="Text:\n{passage}\n\nQuestion: {question}\n"
        "Quote the sentence of the text that answers the question.",
    ),
    "zh": Template(
        id="qa-zh-2",
        language="zh",
        ask="阅读下面的文字，提出{n}个阅读理解问题，每行一个。\n\n文字：\n{passage}\n\n问题：",
        answer="文字：\n{passage}\n\n问题：{question}\n请引用文字中回答这个问题的句子。",
    ),
}

# -- parsing ---------------------------------------------------------------------------------

# An optional bullet, number (`2.`, `(ii)`), bold, then an optional label (`Q2:`, `**问题1：**`)
# and the text.
_LABEL = re.compile(
    r"^\s*(?:[-*•>]\s+|#+\s*)?(?:\(?\d{1,2}[.)、:：]\s*|\((?:[ivx]{1,4}|[a-z])\)\s*)?"
    r"(?P<bold>\*\*|__)?\s*"
    r"(?:(?P<label>question|answer|问题|答案|q|a|问|答)\s*\d{0,2}\s*(?(bold)(?:\*\*|__)?)"
    r"\s*[:：.、)]\s*(?(bold)(?:\*\*|__)?))?\s*(?P<rest>.*?)\s*(?(bold)(?:\*\*|__)?)\s*$",
    re.IGNORECASE,
)
_QUESTION_MARK = re.compile(r"^.*[?？]")
_QUESTION_WORD = re.compile(
    r"^(?:what|which|who|whom|whose|when|where|why|how)\b|^(?:什么|谁|哪|如何|怎|为什么|是否|多少)",
    re.IGNORECASE,
)
_WRAPPERS = "\"'“”‘’`*_ "  # quotes and emphasis around a question
# A lead-in, then a quotation: `The sentence that answers the question is: "…"`.
_QUOTED = re.compile(r"^[^\"“「]{0,100}[:：]\s*[\"“「](?P<quote>[^\"”」]+)")


def parse_questions(reply: str) -> list[str]:
    """The questions in a model's reply: JSON, a numbered or bulleted list, or `Q:` lines.

    A line counts when it has a question label, a question mark (text after the last mark is
    dropped) or starts with a question word (the mark is added); quotes around it go. Answer
    lines, repeats and empty questions are skipped.
    """
    found = _json_questions(reply)
    for line in [] if found else reply.splitlines():
        match = _LABEL.match(line)
        if match is None:
            continue
        label = (match["label"] or "").lower()
        if label in ("question", "问题", "q", "问", ""):
            repaired = _repair_question(match["rest"], is_labelled=bool(label))
            found += [repaired] if repaired else []
    return list(dict.fromkeys(q.strip() for q in found if q and q.strip()))


def _repair_question(text: str, is_labelled: bool) -> str | None:
    """The question in a line, or None for an unlabelled line that asks nothing.

    It ends at its last question mark, or gets one when it starts with a question word.
    """
    text = text.strip(_WRAPPERS)
    asked = _QUESTION_MARK.match(text)
    if asked:
        return asked.group(0).strip(_WRAPPERS)
    if _QUESTION_WORD.match(text):
        mark = "？" if passage_language(text) == "zh" else "?"
        return text.rstrip("。.，,;；:：") + mark
    return text if is_labelled else None


def _json_questions(reply: str) -> list[str]:
    """Questions from JSON: a list, or lines, of strings or objects with a `question` key."""
    text = reply.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    found = []
    for chunk in [text, *text.splitlines()]:
        try:
            value = json.loads(chunk.strip().rstrip(","))
        except ValueError:
            continue
        if chunk is not text and not isinstance(value, dict | list):
            continue  # a bare "quoted line" in prose is not JSON output
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                item = {str(k).lower(): v for k, v in item.items()}.get("question")
            if isinstance(item, str):
                found.append(item)
        if chunk is text and found:
            break
    return found


def parse_answer(reply: str) -> str:
    """The answer in a model's reply: its first paragraph, past lead-ins such as `Answer:`.

    A quotation after a lead-in (`The sentence is: "…"`) is the answer by itself.
    """
    for paragraph in re.split(r"\n\s*\n", reply):
        first, _, more = paragraph.strip().partition("\n")
        if len(first) < 80 and first.endswith((":", "：")) and not more:
            continue  # "The answer to the question is:"
        match = _LABEL.match(first)
        if match and (match["label"] or "").lower() in ("answer", "答案", "a", "答"):
            first = match["rest"]
        if quoted := _QUOTED.match(first):
            return quoted["quote"].strip()  # the quote, not the lead-in or what follows
        text = f"{first}\n{more}".strip()
        if text:
            return text
    return ""
