"""The main job, `feilun demo`: today, set up a workspace and answer with the packaged model.

Later issues grow this into the whole flywheel turn; the entry point stays `feilun demo`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from feilun.app.workspace import init_workspace
from feilun.core.errors import FeilunError
from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.models.packaged import SMOLLM2

QUESTION = "What is the capital of France?"
EXPECTED = "Paris"


@dataclass(frozen=True)
class DemoResult:
    """What the demo did and found."""

    workspace: str
    model: str
    question: str
    answer: str
    is_correct: bool
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def run_demo(
    explicit: Path | None = None,
    env: Mapping[str, str] = os.environ,
    on_step: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Create (or reuse) the workspace, load the packaged model, ask the check question."""
    started = time.perf_counter()
    on_step("workspace")
    workspace, _ = init_workspace(explicit, env)
    try:
        if SMOLLM2.locate() is None:
            raise FeilunError(f"{SMOLLM2.name} is not installed", SMOLLM2.install_hint)
        on_step(f"loading {SMOLLM2.name} (first run converts the GGUF file, ~20 s)")
        model = workspace.models.open(SMOLLM2.name)
        on_step(f"asking: {QUESTION}")
        completion = model.chat(
            [Message(role="user", content=QUESTION)], GenerationParams(max_tokens=48)
        )
    finally:
        workspace.close()
    return DemoResult(
        workspace=str(workspace.path.resolve()),
        model=SMOLLM2.name,
        question=QUESTION,
        answer=completion.text.strip(),
        is_correct=EXPECTED.lower() in completion.text.lower(),
        prompt_tokens=completion.usage.prompt_tokens,
        completion_tokens=completion.usage.completion_tokens,
        seconds=round(time.perf_counter() - started, 1),
    )
