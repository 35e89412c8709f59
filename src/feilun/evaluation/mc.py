"""Multiple-choice task: C-Eval/CMMLU/MMLU prompts, scored by log-likelihood or generated letter.

The `mmlu` format renders exactly lm-evaluation-harness's `mmlu` task (description, "A. …"
lines, "Answer:", options " A"…" D", few-shot examples joined by blank lines), so the two can
be compared item by item. A local model scores each option's log-likelihood; any other
ChatModel (an endpoint, an agent) is asked in chat form and its first answer letter is read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from feilun.core.errors import ConfigError
from feilun.core.protocols import ChatModel, GenerationParams
from feilun.core.records import Message
from feilun.evaluation.items import LETTERS, Loaded, McItem
from feilun.evaluation.metrics import (
    Interval,
    bootstrap_interval,
    has_chinese,
    mean,
    stratified_interval,
)
from feilun.evaluation.results import Progress, TaskResult, ask_all
from feilun.evaluation.scoring import LoglikelihoodScorer

PromptFormat = Literal["auto", "mmlu", "ceval"]
Scoring = Literal["auto", "loglikelihood", "generate"]


@dataclass(frozen=True)
class PromptStyle:
    """How a question is written; every field is pinned in the report."""

    name: str
    description: str
    question: str
    option: str
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"


STYLES = {
    "mmlu": PromptStyle(
        name="mmlu",
        description=(
            "The following are multiple choice questions (with answers) about {subject}.\n\n"
        ),
        question="{question}\n{options}\nAnswer:",
        option="{letter}. {text}",
    ),
    "ceval": PromptStyle(
        name="ceval",
        description="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
        question="{question}\n{options}\n答案：",
        option="{letter}. {text}",
    ),
}


@dataclass(frozen=True)
class McConfig:
    """Settings of one multiple-choice run."""

    format: PromptFormat = "auto"
    shots: int = 0
    limit: int | None = None
    scoring: Scoring = "auto"
    max_tokens: int = 16
    seed: int = 1234


def pick_style(items: Sequence[McItem], fmt: PromptFormat) -> PromptStyle:
    """The named style, or for `auto` ceval when most questions are Chinese, else mmlu."""
    if fmt == "auto":
        chinese = sum(1 for item in items[:50] if has_chinese(item.question))
        fmt = "ceval" if chinese * 2 > min(len(items), 50) else "mmlu"
    if fmt not in STYLES:
        raise ConfigError(f"unknown prompt format {fmt!r}", f"use one of auto, {', '.join(STYLES)}")
    return STYLES[fmt]


def render_question(item: McItem, style: PromptStyle) -> str:
    """The question with its lettered options, ending where the answer letter goes."""
    options = "\n".join(
        style.option.format(letter=LETTERS[i], text=text) for i, text in enumerate(item.choices)
    )
    return style.question.format(question=item.question.strip(), options=options)


def render_context(item: McItem, shots: Sequence[McItem], style: PromptStyle) -> str:
    """Description, solved few-shot examples, then the question (lm-eval's layout)."""
    description = style.description.format(subject=item.subject.replace("_", " "))
    solved = [
        render_question(shot, style) + style.target_delimiter + LETTERS[shot.answer]
        for shot in shots
    ]
    return (
        description
        + "".join(s + style.fewshot_delimiter for s in solved)
        + render_question(item, style)
    )


def render_messages(item: McItem, shots: Sequence[McItem], style: PromptStyle) -> list[Message]:
    """Chat form: the description as system prompt, few-shot examples as earlier turns."""
    description = style.description.format(subject=item.subject.replace("_", " ")).strip()
    messages = [Message(role="system", content=description)]
    for shot in shots:
        messages.append(Message(role="user", content=render_question(shot, style)))
        messages.append(Message(role="assistant", content=LETTERS[shot.answer]))
    messages.append(Message(role="user", content=render_question(item, style)))
    return messages


def parse_letter(text: str, n_choices: int) -> int | None:
    """The option index a generated answer names ("B", "(B) …", "答案：B", "The answer is B").

    An explicit statement ("answer is", "答案", "选") wins, then a letter opening the answer,
    then the first option letter standing alone anywhere.
    """
    letters = LETTERS[:n_choices]
    alone = rf"([{letters}])(?![A-Za-z])"
    patterns = (
        rf"(?:answer is|answer:|答案[是为：:]?|选)\s*\(?{alone}",
        rf"^\W*{alone}",
        rf"(?<![A-Za-z]){alone}",
    )
    for pattern in patterns:
        match = re.search(pattern, text.strip(), re.IGNORECASE if pattern is patterns[0] else 0)
        if match:
            return letters.index(match.group(1).upper())
    return None


def choose_shots(
    items: Sequence[McItem], pool: Sequence[McItem], k: int
) -> dict[str, list[McItem]]:
    """Per subject, the first `k` pool items (the pool's own subject order; lm-eval's first_n).

    When the pool is the evaluated file itself, the first k+1 items are taken so each question
    can use k examples other than itself.
    """
    by_subject: dict[str, list[McItem]] = {}
    for item in pool:
        by_subject.setdefault(item.subject, []).append(item)
    subjects = {item.subject for item in items}
    extra = 1 if pool is items else 0
    return {s: by_subject.get(s, [])[: k + extra] for s in sorted(subjects)} if k else {}


def run_mc(
    name: str,
    loaded: Loaded[McItem],
    config: McConfig,
    *,
    scorer: LoglikelihoodScorer | None,
    chat: ChatModel | None,
    fewshot_pool: Sequence[McItem] | None = None,
    progress: Progress | None = None,
) -> TaskResult:
    """Score every item (up to `limit`), with micro, per-subject and macro accuracy."""
    started = time.perf_counter()
    items = loaded.first(config.limit)
    style = pick_style(items, config.format)
    pool = fewshot_pool if fewshot_pool is not None else items
    shots_by_subject = choose_shots(items, pool, config.shots)

    def shots_for(item: McItem) -> list[McItem]:
        return [s for s in shots_by_subject.get(item.subject, []) if s.id != item.id][
            : config.shots
        ]

    use_loglik = config.scoring == "loglikelihood" or (config.scoring == "auto" and scorer)
    if use_loglik and scorer is None:
        raise ConfigError(
            f"task {name}: scoring=loglikelihood needs a local model",
            "use scoring=generate for endpoints, or a model with the transformers runtime",
        )
    params = GenerationParams(max_tokens=config.max_tokens, temperature=0.0, seed=config.seed)
    rows: list[dict[str, object]] = []
    if use_loglik:
        assert scorer is not None
        requests = [
            (
                render_context(item, shots_for(item), style),
                [style.target_delimiter + LETTERS[i] for i in range(len(item.choices))],
            )
            for item in items
        ]
        scores = scorer.loglikelihoods(
            requests, (lambda done: progress(done, len(items))) if progress else None
        )
        for item, options in zip(items, scores, strict=True):
            pred = max(range(len(options)), key=options.__getitem__)
            rows.append(_row(item, pred, {"logprobs": options}))
    else:
        if chat is None:
            raise ConfigError(f"task {name}: no model to ask", "pass --model")
        conversations = [render_messages(item, shots_for(item), style) for item in items]
        answers = ask_all(chat, conversations, params, progress=progress)
        for item, answer in zip(items, answers, strict=True):
            if answer.error:
                rows.append({**_row(item, None, {}), "score": None, "error": answer.error})
                continue
            parsed = parse_letter(answer.text, len(item.choices))
            rows.append(_row(item, parsed, {"generation": answer.text}))
    metrics, subjects = _aggregate(rows, config.seed)
    return TaskResult(
        name=name,
        kind="mc",
        path=loaded.path,
        sha256=loaded.sha256,
        primary="accuracy",
        config=asdict(config),
        prompt=asdict(style),
        scoring="loglikelihood" if use_loglik else "generate",
        decoding={} if use_loglik else params.model_dump(),
        items=rows,
        metrics=metrics,
        skipped=loaded.skipped,
        fewshot={s: [i.id for i in shots] for s, shots in shots_by_subject.items()},
        subjects=subjects,
        wall_time_s=time.perf_counter() - started,
        texts={item.id: "\n".join([item.question, *item.choices]) for item in items},
    )


def _row(item: McItem, pred: int | None, extra: dict[str, object]) -> dict[str, object]:
    return {
        "id": item.id,
        "subject": item.subject,
        "gold": LETTERS[item.answer],
        "pred": None if pred is None else LETTERS[pred],
        "score": 1.0 if pred == item.answer else 0.0,
        **extra,
    }


def _aggregate(
    rows: Sequence[dict[str, object]], seed: int
) -> tuple[dict[str, Interval], dict[str, dict[str, float]]]:
    scored = [r for r in rows if isinstance(r.get("score"), float)]
    by_subject: dict[str, list[float]] = {}
    for row in scored:
        by_subject.setdefault(str(row["subject"]), []).append(float(row["score"]))  # type: ignore[arg-type]
    subjects = {s: {"n": len(v), "accuracy": mean(v)} for s, v in sorted(by_subject.items())}
    values = [float(r["score"]) for r in scored]  # type: ignore[arg-type]
    return {
        "accuracy": bootstrap_interval(values, seed),
        "macro_accuracy": stratified_interval(by_subject, seed),
    }, subjects
