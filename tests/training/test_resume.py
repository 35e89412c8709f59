"""Checkpoints and resume: after kill -9 or a failed checkpoint write, resume equals no crash.

The run uses LoRA dropout, so resuming must also restore the random number generators; it
crosses epoch boundaries (3 steps per epoch), so the data order must resume too. The fast
kill -9 test forks the test process (no new interpreter to start); the slow one kills a real
`feilun train run` process.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from feilun.core.errors import ArtifactError
from feilun.training.checkpointing import latest_checkpoint
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.runs import open_run, read_metrics, show_run, start_run

RECIPE = Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml"
OVERRIDES = [
    "train.max_steps=10",
    "train.batch_size=2",
    "checkpoint.every_steps=3",
    "data.val_fraction=0.25",
    "lora.dropout=0.1",
]
KILL_AT = 8  # logged steps when the child dies; step 6 is the newest checkpoint by then
TOLERANCE = 1e-6

# Run `feilun train run` in a child that SIGKILLs itself once step KILL_AT is logged: a real
# kill -9, at a point the test chooses.
KILLED_CHILD = f"""
import os, signal, sys
import feilun.training.recipes.sft_lora as recipe
logged = recipe.append_metrics
def append_then_die(run, record):
    logged(run, record)
    if record.get("step") == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
recipe.append_metrics = append_then_die
from feilun.cli.main import run
sys.argv = ["feilun", *sys.argv[1:]]
run()
"""


def _weights(resources: Resources, run_id: str) -> dict[str, torch.Tensor]:
    return load_file(
        str(open_run(resources.runs_root, run_id).output / "adapter_model.safetensors")
    )


def _curve(resources: Resources, run_id: str) -> list[tuple[int, float]]:
    metrics = read_metrics(open_run(resources.runs_root, run_id))
    return [(m["step"], m.get("loss", m.get("val_loss"))) for m in metrics]


def _assert_same_run(resources: Resources, a: str, b: str) -> None:
    curve_a, curve_b = _curve(resources, a), _curve(resources, b)
    assert [s for s, _ in curve_a] == [s for s, _ in curve_b]
    assert all(abs(x - y) <= TOLERANCE for (_, x), (_, y) in zip(curve_a, curve_b, strict=True))
    weights_a, weights_b = _weights(resources, a), _weights(resources, b)
    assert weights_a.keys() == weights_b.keys()
    for name, tensor in weights_a.items():
        assert torch.allclose(tensor, weights_b[name], atol=TOLERANCE, rtol=0), name


@pytest.fixture
def uninterrupted(resources: Resources) -> str:
    execute_run(resources, start_run(resources, RECIPE, OVERRIDES, "clean"))
    return "clean"


def _train_and_die(workspace: Path) -> None:
    """In a forked child: run `killed` and SIGKILL this process once step KILL_AT is logged."""
    import feilun.training.recipes.sft_lora as recipe
    from feilun.app.workspace import opened

    logged = recipe.append_metrics

    def append_then_die(run: Any, record: dict[str, Any]) -> None:
        logged(run, record)
        if record.get("step") == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    recipe.append_metrics = append_then_die
    with opened(workspace, env={}) as ws:  # the child's own database connections
        resources = Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
        execute_run(resources, start_run(resources, RECIPE, OVERRIDES, "killed"))


def _resume_killed_run(resources: Resources, uninterrupted: str) -> None:
    killed = open_run(resources.runs_root, "killed")
    assert show_run(resources.runs_root, "killed")["status"] == "interrupted"
    assert latest_checkpoint(killed.checkpoints).name == "step-000006"
    assert max(m["step"] for m in read_metrics(killed)) == KILL_AT

    manifest = execute_run(resources, killed)
    assert manifest is not None and manifest["result"] == "tiny:greetings-sft-lora@2"
    _assert_same_run(resources, "killed", uninterrupted)


def test_resume_after_kill_9_equals_an_uninterrupted_run(
    resources: Resources, workspace: Path, uninterrupted: str
) -> None:
    child = multiprocessing.get_context("fork").Process(target=_train_and_die, args=(workspace,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    _resume_killed_run(resources, uninterrupted)


@pytest.mark.slow
def test_resume_after_kill_9_of_the_cli_process(
    resources: Resources, workspace: Path, uninterrupted: str
) -> None:
    argv = ["train", "run", str(RECIPE), *OVERRIDES, "--run-id", "killed", "--json"]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, *argv, "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FEILUN_WORKSPACE": str(workspace)},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    _resume_killed_run(resources, uninterrupted)


def test_failed_checkpoint_write_keeps_the_previous_one(
    resources: Resources, uninterrupted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    real_save = safetensors.torch.save_file
    calls: list[int] = []

    def disk_fills_on_second_checkpoint(tensors: Any, path: str, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            Path(path).write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path, *args)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_fills_on_second_checkpoint)
    run = start_run(resources, RECIPE, OVERRIDES, "full-disk")
    with pytest.raises(ArtifactError, match="step 6 could not be written.*No space left") as error:
        execute_run(resources, run)
    assert "free disk space" in (error.value.fix or "")
    assert "step-000003, which is intact" in (error.value.fix or "")
    assert [p.name for p in run.checkpoints.iterdir()] == ["step-000003"]
    assert show_run(resources.runs_root, "full-disk")["status"] == "failed"

    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    execute_run(resources, run)
    _assert_same_run(resources, "full-disk", uninterrupted)
