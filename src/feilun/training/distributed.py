"""Data parallelism across processes started by an engine (torchrun or Ray Train; gloo on CPU).

Each process computes gradients of its share of a step's examples, scaled by the token count
of the whole step, so summing gradients over processes gives exactly the one-process gradient.
With one process every function here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files, logs and registers the result."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where this process computes: its GPU, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.rank % torch.cuda.device_count())
        return torch.device("cpu")


def join_world() -> World:
    """Join the process group the engine describes (RANK/WORLD_SIZE variables), if any.

    Ray Train has set the group up already; torchrun leaves that to this process.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def leave_world(world: World) -> None:
    """Tear the process group down (after a last barrier)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_over(world: World, value: float) -> float:
    """`value` summed over every process."""
    if world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def sum_gradients(world: World, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum each trainable gradient over processes (missing ones count as zero)."""
    if world.size == 1:
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad)


def barrier(world: World) -> None:
    """Wait for every process."""
    if world.size > 1:
        dist.barrier()
