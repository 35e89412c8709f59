"""Train/serve parity: the model in this process and the same model as served answer alike.

Fixed prompts are answered greedily twice: by the runtime in this process, and through the
endpoint users call (the gateway, registered as an `openai_upstream` model). An item matches
when both answers are the same text. One request at a time on each side, so batching cannot
reorder floating-point sums between them. The gate's `parity` rule asks for a match rate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from feilun.core.protocols import ChatModel
from feilun.evaluation.items import Loaded, load_jsonl
from feilun.evaluation.metrics import bootstrap_interval
from feilun.evaluation.results import Progress, TaskResult, ask_all, greedy_requests


@dataclass(frozen=True)
class ParityPrompt:
    """One fixed prompt."""

    id: str
    prompt: str


@dataclass(frozen=True)
class ParityConfig:
    """Settings of one parity run."""

    served: str  # the served model's reference
    limit: int | None = None
    max_tokens: int = 32
    seed: int = 1234


def load_parity(path: Path) -> Loaded[ParityPrompt]:
    """The `prompt` of each JSONL row; bad rows skipped with their line numbers."""
    return load_jsonl(path, _parity_prompt, "parity")


def _parity_prompt(row: Any, number: int) -> ParityPrompt:
    prompt = row.get("prompt") if isinstance(row, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("no `prompt` text")
    return ParityPrompt(str(row.get("id") or number), prompt)


def run_parity(
    name: str,
    loaded: Loaded[ParityPrompt],
    config: ParityConfig,
    *,
    local: ChatModel,
    served: ChatModel,
    progress: Progress | None = None,
) -> TaskResult:
    """Answer every prompt greedily in process and as served; score 1 where they agree."""
    started = time.perf_counter()
    items = loaded.first(config.limit)
    prompts = [item.prompt for item in items]
    params, conversations = greedy_requests(prompts, config.max_tokens, config.seed)
    in_process = ask_all(local, conversations, params, workers=1, progress=progress)
    as_served = ask_all(served, conversations, params, workers=1)
    rows: list[dict[str, object]] = []
    for item, mine, theirs in zip(items, in_process, as_served, strict=True):
        row: dict[str, object] = {"id": item.id, "in_process": mine.text, "served": theirs.text}
        error = mine.error or theirs.error
        if error:
            row.update(score=None, error=error)
        else:
            row["score"] = 1.0 if mine.text == theirs.text else 0.0
        rows.append(row)
    scores = [float(r["score"]) for r in rows if r["score"] is not None]  # type: ignore[arg-type]
    return TaskResult(
        name=name,
        kind="parity",
        path=loaded.path,
        sha256=loaded.sha256,
        primary="match_rate",
        config=asdict(config),
        prompt={"template": "the prompt as the only user message"},
        scoring="generate",
        decoding=params.model_dump(),
        items=rows,
        metrics={"match_rate": bootstrap_interval(scores, config.seed)},
        skipped=loaded.skipped,
        wall_time_s=time.perf_counter() - started,
        texts={item.id: item.prompt for item in items},
    )
