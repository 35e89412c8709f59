"""What a recipe is handed (`RunContext`) and what it hands back (`RunResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feilun.core.protocols import Catalog
from feilun.core.records import BaseModel, Dataset
from feilun.models.registry import ModelRegistry
from feilun.store.artifacts import ArtifactStore
from feilun.training.distributed import World
from feilun.training.recipe import Recipe
from feilun.training.runs import Run


@dataclass(frozen=True)
class Resources:
    """The workspace pieces training uses, built by the composition root."""

    catalog: Catalog
    artifacts: ArtifactStore
    models: ModelRegistry
    runs_root: Path


@dataclass(frozen=True)
class StepReport:
    """Progress after one optimizer step (for a progress bar)."""

    step: int
    total_steps: int
    loss: float
    tokens_per_s: float


ProgressFn = Callable[[StepReport], None]


@dataclass(frozen=True)
class RunContext:
    """Everything a recipe's `train` needs."""

    recipe: Recipe
    resources: Resources
    run: Run
    world: World
    progress: ProgressFn | None = None

    def report(self, step: StepReport) -> None:
        """Tell the progress bar (main process only)."""
        if self.progress is not None and self.world.is_main:
            self.progress(step)


@dataclass
class RunResult:
    """What a recipe made, and the figures of the run."""

    result: str  # the model reference that serves it, e.g. `tiny:greetings-sft-lora@1`
    base: BaseModel
    dataset: Dataset
    data: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
