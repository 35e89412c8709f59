"""Which examples each step sees, and the learning rate at each step.

The order is a pure function of (seed, epoch), so a resumed run needs only its step number to
see the same examples, and N processes split each step's batch without ever overlapping.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from feilun.core.errors import ConfigError
from feilun.training.recipe import TrainSection


@dataclass(frozen=True)
class StepPlan:
    """How a training split is walked: batch size, steps per epoch and in all."""

    examples: int
    batch_size: int
    steps_per_epoch: int
    total_steps: int


def plan_steps(examples: int, train: TrainSection) -> StepPlan:
    """Steps for `examples` under the recipe's epochs, batch and max_steps; checks warmup."""
    batch_size = min(train.batch_size, examples)
    per_epoch = math.ceil(examples / batch_size)
    total = train.max_steps or per_epoch * train.epochs
    if train.warmup_steps >= total:
        where = "train.max_steps" if train.max_steps else f"the steps of {train.epochs} epoch(s)"
        raise ConfigError(
            f"train.warmup_steps={train.warmup_steps} must be < {where}={total}",
            f"lower train.warmup_steps (e.g. {max(total // 10, 0)}) or train for longer",
        )
    return StepPlan(examples, batch_size, per_epoch, total)


def step_examples(step: int, plan: StepPlan, seed: int) -> list[int]:
    """Indices of the examples of optimizer step `step` (0-based), over all processes."""
    epoch, k = divmod(step, plan.steps_per_epoch)
    order = list(range(plan.examples))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[k * plan.batch_size : (k + 1) * plan.batch_size]


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """The share of a step's examples that process `rank` trains on (round robin)."""
    return indices[rank::world_size]


def lr_schedule(
    optimizer: torch.optim.Optimizer, train: TrainSection, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to `train.lr`, then cosine, linear or constant to the last step."""
    warmup, schedule = train.warmup_steps, train.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress if schedule == "linear" else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
