"""Data parallelism: each epoch's examples are split across processes exactly once, and a real
2-process torchrun run (gloo on CPU) follows the single-process loss curve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.recipe import load_recipe
from feilun.training.runs import open_run, read_metrics, start_run
from feilun.training.schedule import plan_steps, shard, step_examples

RECIPE = Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml"
OVERRIDES = ["train.max_steps=8", "train.batch_size=4", "train.micro_batch_size=1"]


@pytest.mark.parametrize(("examples", "world_size"), [(8, 2), (7, 2), (10, 3), (5, 1)])
def test_every_example_is_seen_once_per_epoch_across_processes(
    examples: int, world_size: int
) -> None:
    plan = plan_steps(examples, load_recipe(RECIPE, ["train.epochs=3"]).train)
    for epoch in range(3):
        seen = []
        for step in range(epoch * plan.steps_per_epoch, (epoch + 1) * plan.steps_per_epoch):
            batch = step_examples(step, plan, seed=0)
            shares = [shard(batch, rank, world_size) for rank in range(world_size)]
            assert sorted(i for s in shares for i in s) == sorted(batch)
            seen += batch
        assert sorted(seen) == list(range(examples))
    assert step_examples(0, plan, 0) != step_examples(plan.steps_per_epoch, plan, 0)  # reshuffled


@pytest.mark.slow
def test_two_processes_match_one(resources: Resources, workspace: Path) -> None:
    execute_run(resources, start_run(resources, RECIPE, OVERRIDES, "one"))
    command = [
        sys.executable,
        "-c",
        "from feilun.cli.main import run; run()",
        "train",
        "run",
        str(RECIPE),
        *OVERRIDES,
        "--run-id",
        "two",
        "--nproc",
        "2",
        "--json",
        "--workspace",
        str(workspace),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = [m for m in read_metrics(open_run(resources.runs_root, "one")) if "loss" in m]
    two = [m for m in read_metrics(open_run(resources.runs_root, "two")) if "loss" in m]
    assert [m["step"] for m in one] == [m["step"] for m in two] == list(range(1, 9))
    assert [m["tokens"] for m in one] == [m["tokens"] for m in two]  # the same examples
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * max(1.0, a["loss"]), (a, b)
    assert resources.models.resolve("tiny:greetings-sft-lora@2").adapter.meta["run_id"] == "two"
