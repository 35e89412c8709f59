"""Extractive and free-form QA: ask in chat form, score EM, F1 and "contains the reference".

Chinese references are scored per character as CMRC 2018 does, English ones as SQuAD does
(`metrics`). The prompt asks for the shortest answer in the question's language.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from feilun.core.protocols import ChatModel, GenerationParams
from feilun.core.records import Message
from feilun.evaluation.items import Loaded, QaItem
from feilun.evaluation.metrics import (
    bootstrap_interval,
    contains_reference,
    exact_match,
    f1_score,
    has_chinese,
)
from feilun.evaluation.results import Progress, TaskResult, ask_all

PROMPTS = {
    "en": {
        "system": "Answer the question. If a passage is given, answer from it. "
        "Reply with the answer only, as short as possible.",
        "with_context": "Passage: {context}\n\nQuestion: {question}",
        "without_context": "Question: {question}",
    },
    "zh": {
        "system": "回答问题。如果给出了文章，请根据文章回答。只给出答案，尽量简短。",
        "with_context": "文章：{context}\n\n问题：{question}",
        "without_context": "问题：{question}",
    },
}
METRICS = ("em", "f1", "contains")


@dataclass(frozen=True)
class QaConfig:
    """Settings of one QA run."""

    limit: int | None = None
    max_tokens: int = 48
    seed: int = 1234


def render_messages(item: QaItem) -> list[Message]:
    """System instruction and the passage with the question, in the question's language."""
    prompt = PROMPTS["zh" if has_chinese(item.question) else "en"]
    template = prompt["with_context"] if item.context else prompt["without_context"]
    return [
        Message(role="system", content=prompt["system"]),
        Message(role="user", content=template.format(context=item.context, question=item.question)),
    ]


def score_answer(prediction: str, references: tuple[str, ...]) -> dict[str, float]:
    """EM, F1 and contains of one prediction against its references."""
    return {
        "em": exact_match(prediction, references),
        "f1": f1_score(prediction, references),
        "contains": contains_reference(prediction, references),
    }


def run_qa(
    name: str,
    loaded: Loaded[QaItem],
    config: QaConfig,
    *,
    chat: ChatModel,
    progress: Progress | None = None,
) -> TaskResult:
    """Ask every item (up to `limit`) greedily and score the answers."""
    started = time.perf_counter()
    items = loaded.first(config.limit)
    params = GenerationParams(max_tokens=config.max_tokens, temperature=0.0, seed=config.seed)
    answers = ask_all(chat, [render_messages(item) for item in items], params, progress=progress)
    rows: list[dict[str, object]] = []
    for item, answer in zip(items, answers, strict=True):
        row: dict[str, object] = {"id": item.id, "references": list(item.answers)}
        if answer.error:
            row.update(generation=None, score=None, error=answer.error)
        else:
            scores = score_answer(answer.text, item.answers)
            row.update(generation=answer.text, score=scores["f1"], scores=scores)
        rows.append(row)
    scored: list[dict[str, float]] = [s for r in rows if isinstance(s := r.get("scores"), dict)]
    metrics = {
        metric: bootstrap_interval([float(s[metric]) for s in scored], config.seed)
        for metric in METRICS
    }
    return TaskResult(
        name=name,
        kind="qa",
        path=loaded.path,
        sha256=loaded.sha256,
        primary="f1",
        config=asdict(config),
        prompt=PROMPTS,
        scoring="generate",
        decoding=params.model_dump(),
        items=rows,
        metrics=metrics,
        skipped=loaded.skipped,
        wall_time_s=time.perf_counter() - started,
        texts={item.id: "\n".join([item.question, *item.answers]) for item in items},
    )
