"""Data parallelism: each epoch's examples are split across processes exactly once, and real
2-process runs (torchrun, and Ray Train workers; gloo on CPU) follow the single-process curve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feilun.core.errors import PluginError
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.recipe import load_recipe
from feilun.training.runs import open_run, read_metrics, show_run, start_run
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


def _train_in_two_processes(workspace: Path, run_id: str, *engine: str) -> None:
    """`feilun train run … --nproc 2 [--engine …]` in a child process."""
    command = [
        sys.executable,
        "-c",
        "from feilun.cli.main import run; run()",
        "train",
        "run",
        str(RECIPE),
        *OVERRIDES,
        "--run-id",
        run_id,
        "--nproc",
        "2",
        *engine,
        "--json",
        "--workspace",
        str(workspace),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _assert_same_curve(resources: Resources, one_id: str, two_id: str) -> None:
    one = [m for m in read_metrics(open_run(resources.runs_root, one_id)) if "loss" in m]
    two = [m for m in read_metrics(open_run(resources.runs_root, two_id)) if "loss" in m]
    assert [m["step"] for m in one] == [m["step"] for m in two] == list(range(1, 9))
    assert [m["tokens"] for m in one] == [m["tokens"] for m in two]  # the same examples
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * max(1.0, a["loss"]), (a, b)
    assert show_run(resources.runs_root, two_id)["world_size"] == 2


@pytest.mark.slow
def test_two_processes_match_one(resources: Resources, workspace: Path) -> None:
    execute_run(resources, start_run(resources, RECIPE, OVERRIDES, "one"))
    _train_in_two_processes(workspace, "two")
    _assert_same_curve(resources, "one", "two")
    assert resources.models.resolve("tiny:greetings-sft-lora@2").adapter.meta["run_id"] == "two"


@pytest.mark.slow
def test_ray_train_workers_match_one_process(resources: Resources, workspace: Path) -> None:
    """`--engine ray`: two Ray Train workers (gloo) follow the single-process curve."""
    execute_run(resources, start_run(resources, RECIPE, OVERRIDES, "one"))
    _train_in_two_processes(workspace, "ray", "--engine", "ray")
    _assert_same_curve(resources, "one", "ray")
    adapter = resources.models.resolve("tiny:greetings-sft-lora@2").adapter
    assert adapter is not None and adapter.meta["run_id"] == "ray"


def test_unknown_engine_fails_before_a_run_is_made(workspace: Path) -> None:
    from typer.testing import CliRunner

    from feilun.cli.main import app

    result = CliRunner().invoke(
        app,
        ["train", "run", str(RECIPE), "--engine", "rey", "--workspace", str(workspace)],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, PluginError)
    assert "unknown engine 'rey' (did you mean ray?)" in result.exception.message
    assert "torchrun" in result.exception.message
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())
