"""Synthetic, grounded QA: question/answer pairs a ChatModel writes from document passages.

The model asks questions about a passage (`data.passages`), then answers each by quoting the
passage. A pair is kept only when its answer is supported by the passage: the model's own
words ("generated"), or the passage sentence its answer points at ("extractive"). Every other
candidate is counted by reason. The rows depend on the documents, the model and the seed only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from feilun.core.errors import InputTooLong, NotFound
from feilun.core.protocols import ChatModel, GenerationParams
from feilun.core.records import Dataset, Document, Message
from feilun.data.collections import document_source_id, list_documents
from feilun.data.datasets import check_dataset_name, save_dataset
from feilun.data.items import Item, Rejection
from feilun.data.passages import (
    GROUNDING_REASONS,
    Answer,
    Passage,
    check_question,
    document_passages,
    ground_answer,
    passage_language,
    tokens,
)
from feilun.data.pipeline import OperatorReport

if TYPE_CHECKING:
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

logger = logging.getLogger(__name__)

OPERATOR, VERSION = "synth_qa", "2"
LanguageChoice = Literal["auto", "zh", "en"]
#: Called after each passage: (passages done, passages in all).
ProgressFn = Callable[[int, int], None]

#: Why a candidate was rejected: reason → what it means.
REASONS = {
    "unparsed": "the reply held no question",
    "model_error": "the prompt does not fit the model's context",
    "surplus": "more questions than per_chunk",
    **GROUNDING_REASONS,
}

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


# -- the run ---------------------------------------------------------------------------------


class SynthParams(pydantic.BaseModel):
    """What `synthesize_qa` does; stored, with the templates, as the dataset's recipe."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    model: str = pydantic.Field(description="Pinned reference of the model that writes pairs.")
    per_chunk: int = pydantic.Field(3, ge=1, le=20, description="Pairs kept at most per passage.")
    max_passages: int | None = pydantic.Field(
        20, ge=1, description="How many passages the seed picks (None: all)."
    )
    seed: int = pydantic.Field(0, description="Seeds the passage sample and every model call.")
    language: LanguageChoice = pydantic.Field(
        "auto", description="Template language: each passage's own (auto), zh or en."
    )
    temperature: float = pydantic.Field(
        0.7, ge=0, le=2, description="Sampling of the asks after the first, greedy, one."
    )
    max_tokens: int = pydantic.Field(96, ge=8, description="Most new tokens per model call.")
    attempts: int = pydantic.Field(
        4, ge=1, le=10, description="Asks per passage while fewer than per_chunk pairs are kept."
    )
    min_support: float = pydantic.Field(
        0.6, ge=0, le=1, description="Share of the answer's token bigrams found in the passage."
    )
    min_chars: int = pydantic.Field(300, ge=1, description="Passages grow to this many chars.")
    max_chars: int = pydantic.Field(800, ge=1, description="Passages stay under this many chars.")
    system_prompt: str | None = pydantic.Field(None, description="System message of each example.")

    def recipe(self) -> dict[str, Any]:
        """The resolved parameters and the templates, as stored in the dataset."""
        return {
            "description": f"synthetic QA by {self.model}, seed {self.seed}",
            "operator": OPERATOR,
            "version": VERSION,
            **self.model_dump(),
            "templates": {t.id: asdict(t) for t in TEMPLATES.values()},
        }


@dataclass
class SynthResult:
    """Rows kept, rejected candidates and counts: `generated == kept + sum(rejected_by_reason)`.

    A candidate is a question the model wrote, or a reply (or prompt) that gave none.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    passages: int = 0
    model_calls: int = 0
    generated: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Counts for people and `--json`."""
        return {
            "passages": self.passages,
            "model_calls": self.model_calls,
            "generated": self.generated,
            "kept": len(self.rows),
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
        }


def synthesize_qa(
    documents: Sequence[Document],
    model: ChatModel,
    params: SynthParams,
    progress: ProgressFn | None = None,
) -> SynthResult:
    """Ask `model` for grounded pairs on a seeded sample of the documents' passages."""
    passages = document_passages(documents, params.min_chars, params.max_chars, params.language)
    if params.max_passages is not None and params.max_passages < len(passages):
        picked = random.Random(params.seed).sample(range(len(passages)), params.max_passages)
        passages = [passages[i] for i in sorted(picked)]  # kept in document order
    result = SynthResult(passages=len(passages))
    seen: set[str] = set()  # questions kept so far, as tokens
    for done, passage in enumerate(passages, 1):
        try:
            _ask_passage(passage, model, params, result, seen)
        except InputTooLong as e:  # this passage only: the next may fit
            _reject(result, passage, "model_error", e.message, "")
        if progress is not None:
            progress(done, len(passages))
    logger.info("synth-qa: %s", result.summary())
    return result


def _ask_passage(
    passage: Passage, model: ChatModel, params: SynthParams, result: SynthResult, seen: set[str]
) -> None:
    template, kept = TEMPLATES[passage.language], 0

    def call(prompt: str, temperature: float, step: str) -> str:
        # Each call's seed comes from the run's seed, the passage and the step, not the order.
        key = f"{params.seed}:{passage.document.content_hash}:{passage.start}:{step}"
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
        generation = GenerationParams(
            max_tokens=params.max_tokens, temperature=temperature, seed=seed
        )
        result.model_calls += 1
        return model.chat([Message(role="user", content=prompt)], generation).text

    for attempt in range(params.attempts):
        if kept >= params.per_chunk:
            return
        prompt = template.ask.format(n=params.per_chunk - kept, passage=passage.text)
        # The first ask is greedy (the model's best guess); later ones sample other questions.
        reply = call(prompt, params.temperature if attempt else 0.0, f"ask{attempt}")
        questions = parse_questions(reply)
        if not questions:
            _reject(result, passage, "unparsed", REASONS["unparsed"], reply)
        for number, question in enumerate(questions):
            full = kept >= params.per_chunk
            reason = "surplus" if full else check_question(question, passage, seen)
            if reason is not None:
                _reject(result, passage, reason, REASONS[reason], f"Q: {question}")
                continue
            prompt = template.answer.format(question=question, passage=passage.text)
            reply = parse_answer(call(prompt, 0.0, f"answer{attempt}.{number}"))
            reason, answer = ground_answer(question, reply, passage, params.min_support)
            if reason is not None:
                detail = f"{REASONS[reason]} (support {answer.support:.2f})"
                _reject(result, passage, reason, detail, f"Q: {question}\nA: {reply}")
                continue
            seen.add("".join(tokens(question)))
            kept += 1
            result.generated += 1
            result.rows.append(_row(passage, template, params, question, answer))


def _source(passage: Passage) -> dict[str, Any]:
    document = passage.document
    return {
        "document_id": document.id,
        "source_id": document_source_id(document),
        "source": document.source or document.name,
        "title": document.title,
        "span": [passage.start, passage.end],
        "page": passage.page,
        "language": passage.language,
    }


def _reject(result: SynthResult, passage: Passage, reason: str, detail: str, text: str) -> None:
    result.generated += 1
    result.rejected_by_reason[reason] += 1
    item_id = f"{passage.document.id}:{passage.start}-{passage.end}:{len(result.rejected)}"
    item = Item(item_id, text, _source(passage))
    result.rejected.append(Rejection(item, OPERATOR, f"{reason}: {detail}"))


def _row(
    passage: Passage,
    template: Template,
    params: SynthParams,
    question: str,
    answer: Answer,
) -> dict[str, Any]:
    system = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
    user = {"role": "user", "content": question}
    messages = [*system, user, {"role": "assistant", "content": answer.text}]
    meta = {**_source(passage), "model": params.model, "template": template.id}
    meta.update(support=round(answer.support, 4), answer_mode=answer.mode)
    if answer.span is not None:  # where the quoted sentence is in the document text
        meta["answer_span"] = [passage.start + answer.span[0], passage.start + answer.span[1]]
    digest = hashlib.sha256(json.dumps([messages, meta], sort_keys=True).encode()).hexdigest()
    return {"id": f"qa_{digest[:16]}", "messages": messages, "meta": meta}


def synthesize_dataset(
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    collection: str,
    name: str,
    open_model: Callable[[], ChatModel],
    params: SynthParams,
    progress: ProgressFn | None = None,
) -> tuple[Dataset, SynthResult]:
    """Write pairs from a collection's documents and save them as the next version of `name`.

    The model is opened once the collection is known to have documents. The documents are the
    dataset's inputs (lineage), the rejected candidates its rejected set.
    """
    check_dataset_name(name)
    documents = list_documents(catalog, collection)
    if not documents:
        raise NotFound(
            f"collection {collection!r} has no documents",
            f"ingest files first: `feilun data ingest PATH --collection {collection}`",
        )
    result = synthesize_qa(documents, open_model(), params, progress)
    removed = dict(sorted(result.rejected_by_reason.items()))
    report = OperatorReport(OPERATOR, VERSION, result.generated, len(result.rows), removed)
    dataset = save_dataset(
        catalog,
        artifacts,
        name,
        result.rows,
        inputs=[d.id for d in documents],
        recipe={**params.recipe(), "collection": collection},
        reports=[report],
        rejected=result.rejected,
    )
    return dataset, result
