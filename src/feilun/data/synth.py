"""Synthetic, grounded QA: question/answer pairs written from document passages.

A writer asks about a passage (`data.passages`): a ChatModel asks questions, then answers each
by quoting the passage; the rules (`data.synth_rules`) ask about its definitions, numbers and
obligations and answer with the sentence. `auto` runs the rules on the passages where every
model candidate failed. A pair is kept only when its answer is supported by the passage: the
writer's own words ("generated"), or the passage sentence they point at ("extractive"). Every
other candidate is counted by writer and reason. The rows depend on the documents, the model
and the seed only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter, defaultdict
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
    tokens,
)
from feilun.data.pipeline import OperatorReport
from feilun.data.synth_model import TEMPLATES, parse_answer, parse_questions
from feilun.data.synth_rules import RULES, TEMPLATE_IDS, rule_questions

if TYPE_CHECKING:
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

logger = logging.getLogger(__name__)

OPERATOR, VERSION = "synth_qa", "3"
LanguageChoice = Literal["auto", "zh", "en"]
WriterChoice = Literal["model", "rules", "auto"]
#: Called after each passage: (passages done, passages in all).
ProgressFn = Callable[[int, int], None]

#: Why a candidate was rejected: reason → what it means.
REASONS = {
    "unparsed": "the reply held no question",
    "model_error": "the prompt does not fit the model's context",
    "surplus": "more questions than per_chunk",
    **GROUNDING_REASONS,
}

# -- the run ---------------------------------------------------------------------------------


class SynthParams(pydantic.BaseModel):
    """What `synthesize_qa` does; stored, with the templates, as the dataset's recipe."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    model: str | None = pydantic.Field(
        description="Pinned reference of the model that writes pairs (None with the rules)."
    )
    writer: WriterChoice = pydantic.Field(
        "auto",
        description="Who writes pairs: the model, the rules, or auto (the rules for the "
        "passages where every model candidate failed).",
    )
    per_chunk: int = pydantic.Field(3, ge=1, le=20, description="Pairs kept at most per passage.")
    max_passages: int | None = pydantic.Field(
        20, ge=1, description="How many passages the seed picks (None: all)."
    )
    seed: int = pydantic.Field(
        0, description="Seeds the passage sample, every model call and the rules' choice."
    )
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

    @pydantic.model_validator(mode="after")
    def _check_model(self) -> SynthParams:
        if self.model is None and self.writer != "rules":
            raise ValueError(f"writer={self.writer!r} needs a model; pass one or writer='rules'")
        return self

    @property
    def writers(self) -> tuple[str, ...]:
        """The writers of a run, in the order they are asked."""
        return ("model", "rules") if self.writer == "auto" else (self.writer,)

    @property
    def written_by(self) -> str:
        """Who writes, for people: `tiny@1`, `rules` or `tiny@1 + rules`."""
        return {"model": f"{self.model}", "rules": "rules", "auto": f"{self.model} + rules"}[
            self.writer
        ]

    def recipe(self) -> dict[str, Any]:
        """The resolved parameters and the templates, as stored in the dataset."""
        templates: dict[str, Any] = {}
        if "model" in self.writers:
            templates.update({t.id: asdict(t) for t in TEMPLATES.values()})
        if "rules" in self.writers:
            templates.update({TEMPLATE_IDS[lang]: RULES[lang] for lang in RULES})
        return {
            "description": f"synthetic QA by {self.written_by}, seed {self.seed}",
            "operator": OPERATOR,
            "version": VERSION,
            **self.model_dump(),
            "templates": templates,
        }


@dataclass
class SynthResult:
    """Rows kept, rejected candidates and counts: `generated == kept + sum(rejected_by_reason)`.

    A candidate is a question a writer wrote, or a model reply (or prompt) that gave none.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    passages: int = 0
    model_calls: int = 0
    kept_by_writer: Counter[str] = field(default_factory=Counter)
    rejected_by_writer: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )

    @property
    def rejected_by_reason(self) -> Counter[str]:
        """Rejections by reason, over all writers."""
        return sum(self.rejected_by_writer.values(), Counter())

    @property
    def generated(self) -> int:
        """Candidates of every writer: kept and rejected."""
        return len(self.rows) + self.rejected_by_reason.total()

    def summary(self) -> dict[str, Any]:
        """Counts for people and `--json`."""
        return {
            "passages": self.passages,
            "model_calls": self.model_calls,
            "generated": self.generated,
            "kept": len(self.rows),
            "kept_by_writer": dict(self.kept_by_writer),
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "rejected_by_writer": {
                writer: dict(sorted(self.rejected_by_writer[writer].items()))
                for writer in self.kept_by_writer
            },
        }

    def reports(self) -> list[OperatorReport]:
        """One report per writer (`synth_qa:rules`): candidates in, pairs out, rejections."""
        return [
            OperatorReport(
                f"{OPERATOR}:{writer}",
                VERSION,
                kept + self.rejected_by_writer[writer].total(),
                kept,
                dict(sorted(self.rejected_by_writer[writer].items())),
            )
            for writer, kept in self.kept_by_writer.items()
        ]


def synthesize_qa(
    documents: Sequence[Document],
    model: ChatModel | None,
    params: SynthParams,
    progress: ProgressFn | None = None,
) -> SynthResult:
    """Write grounded pairs on a seeded sample of the documents' passages.

    `model` may be None only when `params.writer` is "rules".
    """
    if model is None and "model" in params.writers:
        raise ValueError(f"writer={params.writer!r} needs a ChatModel, got None")
    passages = document_passages(documents, params.min_chars, params.max_chars, params.language)
    if params.max_passages is not None and params.max_passages < len(passages):
        picked = random.Random(params.seed).sample(range(len(passages)), params.max_passages)
        passages = [passages[i] for i in sorted(picked)]  # kept in document order
    result = SynthResult(
        passages=len(passages), kept_by_writer=Counter(dict.fromkeys(params.writers, 0))
    )
    seen: set[str] = set()  # questions kept so far, as tokens
    for done, passage in enumerate(passages, 1):
        kept = len(result.rows)
        if model is not None and "model" in params.writers:
            try:
                _ask_passage(passage, model, params, result, seen)
            except InputTooLong as e:  # this passage only: the next may fit
                _reject(result, passage, "model", "model_error", e.message, "")
        if "rules" in params.writers and len(result.rows) == kept:
            _write_by_rules(passage, params, result, seen)
        if progress is not None:
            progress(done, len(passages))
    logger.info("synth-qa: %s", result.summary())
    return result


def _ask_passage(
    passage: Passage, model: ChatModel, params: SynthParams, result: SynthResult, seen: set[str]
) -> None:
    template, kept = TEMPLATES[passage.language], 0

    def call(prompt: str, temperature: float, step: str) -> str:
        seed = _passage_seed(params, passage, step)
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
            _reject(result, passage, "model", "unparsed", REASONS["unparsed"], reply)
        for number, question in enumerate(questions):
            full = kept >= params.per_chunk
            reason = "surplus" if full else check_question(question, passage, seen)
            if reason is not None:
                _reject(result, passage, "model", reason, REASONS[reason], f"Q: {question}")
                continue
            prompt = template.answer.format(question=question, passage=passage.text)
            reply = parse_answer(call(prompt, 0.0, f"answer{attempt}.{number}"))
            written = {"writer": "model", "model": params.model, "template": template.id}
            kept += _keep_pair(passage, params, result, seen, question, reply, written)


def _write_by_rules(
    passage: Passage, params: SynthParams, result: SynthResult, seen: set[str]
) -> None:
    """Pairs from the rules, up to per_chunk, the seed picking among the passage's questions."""
    candidates = rule_questions(passage)
    random.Random(_passage_seed(params, passage, "rules")).shuffle(candidates)
    template, kept = TEMPLATE_IDS[passage.language], 0
    for candidate in candidates:
        if kept >= params.per_chunk:
            return
        question, answer = candidate.question, passage.text[candidate.start : candidate.end]
        reason = check_question(question, passage, seen)
        if reason is not None:
            _reject(result, passage, "rules", reason, REASONS[reason], f"Q: {question}")
            continue
        written = {"writer": "rules", "model": None, "template": template, "rule": candidate.rule}
        span = (candidate.start, candidate.end)
        kept += _keep_pair(passage, params, result, seen, question, answer, written, span)


def _keep_pair(
    passage: Passage,
    params: SynthParams,
    result: SynthResult,
    seen: set[str],
    question: str,
    reply: str,
    written: dict[str, Any],
    span: tuple[int, int] | None = None,
) -> bool:
    """Ground the answer to a checked question: keep the pair, or count why not.

    `span` is where a reply quoted from the passage is: the answer kept is extractive.
    """
    reason, answer = ground_answer(question, reply, passage, params.min_support)
    if reason is not None:
        detail = f"{REASONS[reason]} (support {answer.support:.2f})"
        _reject(result, passage, written["writer"], reason, detail, f"Q: {question}\nA: {reply}")
        return False
    if span is not None:
        answer = Answer(reply, "extractive", answer.support, span)
    seen.add("".join(tokens(question)))
    result.kept_by_writer[written["writer"]] += 1
    result.rows.append(_row(passage, params, question, answer, written))
    return True


def _passage_seed(params: SynthParams, passage: Passage, step: str) -> int:
    """A seed from the run's seed, the passage and the step, not the order of the calls."""
    key = f"{params.seed}:{passage.document.content_hash}:{passage.start}:{step}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


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


def _reject(
    result: SynthResult, passage: Passage, writer: str, reason: str, detail: str, text: str
) -> None:
    result.rejected_by_writer[writer][reason] += 1
    item_id = f"{passage.document.id}:{passage.start}-{passage.end}:{len(result.rejected)}"
    item = Item(item_id, text, {**_source(passage), "writer": writer})
    result.rejected.append(Rejection(item, f"{OPERATOR}:{writer}", f"{reason}: {detail}"))


def _row(
    passage: Passage,
    params: SynthParams,
    question: str,
    answer: Answer,
    written: dict[str, Any],
) -> dict[str, Any]:
    system = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
    user = {"role": "user", "content": question}
    messages = [*system, user, {"role": "assistant", "content": answer.text}]
    meta = {**_source(passage), **written}
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

    The model is opened once the collection is known to have documents, and never for the
    rules alone. The documents are the dataset's inputs (lineage), the rejected candidates its
    rejected set, and each writer has its operator report.
    """
    check_dataset_name(name)
    documents = list_documents(catalog, collection)
    if not documents:
        raise NotFound(
            f"collection {collection!r} has no documents",
            f"ingest files first: `feilun data ingest PATH --collection {collection}`",
        )
    model = open_model() if "model" in params.writers else None
    result = synthesize_qa(documents, model, params, progress)
    dataset = save_dataset(
        catalog,
        artifacts,
        name,
        result.rows,
        inputs=[d.id for d in documents],
        recipe={**params.recipe(), "collection": collection},
        reports=result.reports(),
        rejected=result.rejected,
    )
    return dataset, result
