"""What a task run produces (`TaskResult`), and asking a ChatModel many questions robustly.

An item the model could not be asked (an endpoint that timed out after its retries, a prompt
longer than the context) is an *error*: kept in the report with the reason, left out of
every score, and counted — never scored as a wrong answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from feilun.core.errors import BackendUnavailable, FeilunError, QuotaExceeded
from feilun.core.protocols import ChatModel, Completion, GenerationParams, Grounding
from feilun.core.records import Message
from feilun.evaluation.items import Skipped
from feilun.evaluation.metrics import Interval

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
RETRIES = 3
RETRY_WAIT_S = 0.5
WORKERS = 4


@dataclass
class TaskResult:
    """One task's run: pinned inputs and settings, per-item rows and aggregate scores."""

    name: str
    kind: str
    path: str
    sha256: str
    primary: str
    config: dict[str, Any]
    prompt: dict[str, Any]
    scoring: str
    decoding: dict[str, Any]
    items: list[dict[str, Any]]
    metrics: dict[str, Interval]
    skipped: list[Skipped] = field(default_factory=list)
    fewshot: dict[str, list[str]] = field(default_factory=dict)
    subjects: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    texts: dict[str, str] = field(default_factory=dict, repr=False)  # item id -> its words
    contamination: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        """Items that could not be scored (the model was unreachable, the prompt too long)."""
        return sum(1 for item in self.items if item.get("error"))

    @property
    def n(self) -> int:
        """Items scored."""
        return len(self.items) - self.errors

    def to_json(self) -> dict[str, Any]:
        """The task's part of the EvalReport artifact."""
        return {
            "name": self.name,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "primary": self.primary,
            "config": self.config,
            "prompt": self.prompt,
            "scoring": self.scoring,
            "decoding": self.decoding,
            "fewshot": self.fewshot,
            "n": self.n,
            "errors": self.errors,
            "skipped": [s.to_json() for s in self.skipped],
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "subjects": self.subjects,
            "wall_time_s": self.wall_time_s,
            "contamination": self.contamination,
            "items": self.items,
        }


@dataclass(frozen=True)
class Answer:
    """A ChatModel's completion of one conversation, or why there is none."""

    text: str = ""
    error: str = ""
    grounding: Grounding | None = None  # a retrieval-augmented model's citations


def _ask_one(
    model: ChatModel, messages: Sequence[Message], params: GenerationParams, wait_s: float
) -> Answer:
    for attempt in range(RETRIES):
        try:
            completion: Completion = model.chat(messages, params)
            return Answer(completion.text, grounding=completion.grounding)
        except (BackendUnavailable, QuotaExceeded) as e:
            if attempt == RETRIES - 1:
                return Answer(error=f"{type(e).__name__}: {e.message}")
            delay = max(wait_s * 2**attempt, float(getattr(e, "retry_after_s", 0.0) or 0.0))
            logger.warning("retrying in %.1f s after: %s", delay, e.message)
            time.sleep(delay)
        except FeilunError as e:  # too long, refused: not retryable, still not a wrong answer
            return Answer(error=f"{type(e).__name__}: {e.message}")
    raise AssertionError("unreachable")


def ask_all(
    model: ChatModel,
    conversations: Sequence[Sequence[Message]],
    params: GenerationParams,
    *,
    workers: int = WORKERS,
    retry_wait_s: float | None = None,
    progress: Progress | None = None,
) -> list[Answer]:
    """Every conversation's answer, in order; concurrent calls share a local model's batches.

    Unreachable or rate-limited models are retried with exponential backoff from
    `retry_wait_s` (default `RETRY_WAIT_S`), `RETRIES` attempts in all.
    """
    wait_s = RETRY_WAIT_S if retry_wait_s is None else retry_wait_s
    answers: list[Answer] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(_ask_one, model, messages, params, wait_s) for messages in conversations
        ]
        for done, future in enumerate(futures, 1):
            answers.append(future.result())
            if progress is not None:
                progress(done, len(conversations))
    return answers


def greedy_requests(
    prompts: Sequence[str], max_tokens: int, seed: int
) -> tuple[GenerationParams, list[list[Message]]]:
    """Greedy decoding params and one single-turn conversation per prompt."""
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=seed)
    return params, [[Message(role="user", content=prompt)] for prompt in prompts]
