"""Synthetic, grounded QA: question/answer pairs a ChatModel writes from document passages.

Documents are split into passages (heading, paragraph and Chinese-article aware) whose spans
point into `Document.text`. The model asks questions about a passage, then answers each from
the passage; a pair is kept only when its answer is supported by the passage, and every other
candidate is counted by reason. The rows depend on the documents, the model and the seed only.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from feilun.core.errors import ConfigError, InputTooLong, NotFound
from feilun.core.protocols import ChatModel, GenerationParams
from feilun.core.records import Dataset, Document, Message
from feilun.data.collections import list_documents
from feilun.data.datasets import check_dataset_name, save_dataset
from feilun.data.items import Item, Rejection
from feilun.data.operators.language import ENGLISH_WORDS, count_scripts
from feilun.data.pipeline import OperatorReport

if TYPE_CHECKING:
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

logger = logging.getLogger(__name__)

OPERATOR, VERSION = "synth_qa", "1"
MIN_PASSAGE_CHARS = 40  # a lone heading or "第一条" cannot carry a question
LanguageChoice = Literal["auto", "zh", "en"]
#: Called after each passage: (passages done, passages in all).
ProgressFn = Callable[[int, int], None]

# -- passages ------------------------------------------------------------------------------

_HEADING = re.compile(r"#{1,6}\s")
_ARTICLE = re.compile(r"第[一二三四五六七八九十百千零〇两\d]+条")
_SENTENCE_END = re.compile(r"[。！？；]+[”」』）)]*|[.!?;]+[\"')\]]*(?=\s)")


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


def passage_language(text: str) -> str:
    """`zh` when Han characters carry most of the letters (one weighs three Latin), else `en`."""
    scripts = count_scripts(text)
    return "zh" if scripts.han and scripts.han * 3 >= scripts.latin else "en"


def document_passages(
    documents: Sequence[Document], params: SynthParams | None = None
) -> list[Passage]:
    """Every passage of the documents, in document order then text order."""
    params = params or SynthParams(model="")
    passages = []
    for document in documents:
        page_starts = document.meta.get("page_starts") or []
        for start, end in split_passages(document.text, params.min_chars, params.max_chars):
            text = document.text[start:end]
            language = passage_language(text) if params.language == "auto" else params.language
            page = (bisect.bisect_right(page_starts, start) or None) if page_starts else None
            passages.append(Passage(document, start, end, text, language, page))
    return passages


# -- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """How to ask for questions about a passage in one language, then for each answer.

    Two short steps rather than one call for whole pairs: measured on SmolLM2-135M, a small
    model almost never writes a whole pair, but answers a question from a passage.
    """

    id: str
    language: str
    ask: str  # asks for {n} questions about {passage}
    answer: str  # asks for the answer to {question} from {passage}


TEMPLATES: dict[str, Template] = {
    "en": Template(
        id="qa-en-1",
        language="en",
        ask="Read the text and write {n} reading comprehension questions about it, one per "
        "line.\n\nText:\n{passage}\n\nQuestions:",
        answer="Text:\n{passage}\n\nAnswer the question from the text.\n"
        "Question: {question}\nAnswer:",
    ),
    "zh": Template(
        id="qa-zh-1",
        language="zh",
        ask="阅读下面的文字，提出{n}个阅读理解问题，每行一个。\n\n文字：\n{passage}\n\n问题：",
        answer="文字：\n{passage}\n\n根据文字回答问题。\n问题：{question}\n答案：",
    ),
}

# -- parsing ---------------------------------------------------------------------------------

# An optional bullet, number, bold, then an optional label (`Q2:`, `**问题1：**`) and the text.
_LABEL = re.compile(
    r"^\s*(?:[-*•>]\s+|#+\s*)?(?:\(?\d{1,2}[.)、:：]\s*)?(?P<bold>\*\*|__)?\s*"
    r"(?:(?P<label>question|answer|问题|答案|q|a|问|答)\s*\d{0,2}\s*(?(bold)(?:\*\*|__)?)"
    r"\s*[:：.、)]\s*(?(bold)(?:\*\*|__)?))?\s*(?P<rest>.*?)\s*(?(bold)(?:\*\*|__)?)\s*$",
    re.IGNORECASE,
)
_QUESTION_MARK = re.compile(r"^.*[?？]")


def parse_questions(reply: str) -> list[str]:
    """The questions in a model's reply: JSON, a numbered or bulleted list, or `Q:` lines.

    A line counts when it has a question label or a question mark (text after the last mark
    is dropped); answer lines, repeats and empty questions are skipped.
    """
    found = _json_questions(reply)
    for line in [] if found else reply.splitlines():
        match = _LABEL.match(line)
        if match is None:
            continue
        label, asked = (match["label"] or "").lower(), _QUESTION_MARK.match(match["rest"])
        if label in ("question", "问题", "q", "问") or (not label and asked):
            found.append(asked.group(0) if asked else match["rest"])
    return list(dict.fromkeys(q.strip() for q in found if q.strip()))


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
    """The answer in a model's reply: its first paragraph, past lead-ins such as `Answer:`."""
    for paragraph in re.split(r"\n\s*\n", reply):
        first, _, more = paragraph.strip().partition("\n")
        if len(first) < 80 and first.endswith((":", "：")) and not more:
            continue  # "The answer to the question is:"
        match = _LABEL.match(first)
        if match and (match["label"] or "").lower() in ("answer", "答案", "a", "答"):
            first = match["rest"]
        text = f"{first}\n{more}".strip()
        if text:
            return text
    return ""


# -- grounding -------------------------------------------------------------------------------

#: Why a candidate was rejected: reason → what it means.
REASONS = {
    "unparsed": "the reply held no question",
    "model_error": "the prompt does not fit the model's context",
    "empty_question": "a question with no words",
    "not_a_question": "no question mark or question word",
    "wrong_language": "the question is not in the passage's language",
    "off_topic": "too few of the question's content words are in the passage",
    "question_copies_passage": "the question is a sentence of the passage",
    "duplicate": "the same question was kept already",
    "surplus": "more questions than per_chunk",
    "empty_answer": "the reply held no answer",
    "answer_repeats_question": "the answer is the question again",
    "ungrounded": "too little of the answer is in the passage",
}
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+")
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
    max_tokens: int = pydantic.Field(160, ge=8, description="Most new tokens per model call.")
    attempts: int = pydantic.Field(
        2, ge=1, le=10, description="Asks per passage while fewer than per_chunk pairs are kept."
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
    passages = document_passages(documents, params)
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
            answer = parse_answer(call(prompt, 0.0, f"answer{attempt}.{number}"))
            reason, score = check_answer(question, answer, passage, params.min_support)
            if reason is not None:
                detail = f"{REASONS[reason]} (support {score:.2f})"
                _reject(result, passage, reason, detail, f"Q: {question}\nA: {answer}")
                continue
            seen.add("".join(tokens(question)))
            kept += 1
            result.generated += 1
            result.rows.append(_row(passage, template, params, question, answer, score))


def _source(passage: Passage) -> dict[str, Any]:
    document = passage.document
    return {
        "document_id": document.id,
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
    answer: str,
    score: float,
) -> dict[str, Any]:
    system = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
    user = {"role": "user", "content": question}
    messages = [*system, user, {"role": "assistant", "content": answer}]
    meta = {**_source(passage), "model": params.model, "template": template.id}
    meta["support"] = round(score, 4)
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
