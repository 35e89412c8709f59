"""A turn killed with SIGKILL resumes at the step it was in, reusing what was finished.

The child is a real `feilun flywheel turn` process that kills itself at a point the test
picks: after training (when the evaluation starts) or in the middle of training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from feilun.app.flywheel import resume_turn
from feilun.app.flywheel.turns import latest_turn
from feilun.app.workspace import Workspace, opened

from .conftest import RECIPES, TINY, tiny_config

AFTER_TRAINING = """
import os, signal
import feilun.app.flywheel.evaluate as step
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
step.run_suite = die
"""
DURING_TRAINING = """
import os, signal
import feilun.training.recipes.sft_lora as recipe
logged = recipe.append_metrics
def append_then_die(run, record):
    logged(run, record)
    if record.get("step") == 30:  # the checkpoint at step 20 is on disk by then
        os.kill(os.getpid(), signal.SIGKILL)
recipe.append_metrics = append_then_die
"""
MAIN = """
import sys
from feilun.cli.main import run
sys.argv = ["feilun", "flywheel", "turn", "--config", sys.argv[1], "--workspace", sys.argv[2]]
run()
"""


def _killed_turn(workspace: Path, patch: str, config: Path = TINY) -> None:
    child = subprocess.run(
        [sys.executable, "-c", patch + MAIN, str(config), str(workspace)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == -9, child.stderr[-2000:]


def test_a_turn_killed_after_training_resumes_without_training_again(
    workspace_path: Path, tmp_path: Path
) -> None:
    train = {"recipe": str(RECIPES / "../train/tiny_sft_lora.yaml"), "datasets": ["facts"]}
    short = {**train, "overrides": {"train.epochs": 2, "train.warmup_steps": 0}}
    _killed_turn(workspace_path, AFTER_TRAINING, tiny_config(tmp_path, train=short))
    with opened(workspace_path, env={}) as ws:
        killed = latest_turn(ws.database, "tiny")
        assert killed is not None
        assert (killed.status, killed.step, killed.is_alive) == ("running", "evaluate", False)
        trained = killed.outputs("train")
        assert trained["done"] and trained["candidate"] == "tiny:tiny@1"
        run_file = ws.path / "runs" / trained["run_id"] / "manifest.json"
        finished = json.loads(run_file.read_text())["finished_at"]

        result = resume_turn(ws, "tiny")

        assert (result.number, result.candidate) == (1, "tiny:tiny@1")
        assert result.status == "rejected"  # two epochs teach it too little
        assert result.gate["metrics"]["facts"]["metrics"]["f1"]["candidate"] is not None
        assert json.loads(run_file.read_text())["finished_at"] == finished  # not trained again
        assert [a.ref for a in ws.models.adapters()] == ["tiny@1"]


@pytest.mark.slow
def test_a_turn_killed_during_training_continues_the_run_from_its_checkpoint(
    workspace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feilun.training.recipes.sft_lora as recipe

    _killed_turn(workspace_path, DURING_TRAINING)
    steps: list[int] = []
    logged = recipe.append_metrics

    def record(run: object, line: dict[str, object]) -> None:
        steps.append(int(line["step"]))  # type: ignore[call-overload]
        logged(run, line)  # type: ignore[arg-type]

    monkeypatch.setattr(recipe, "append_metrics", record)
    ws: Workspace
    with opened(workspace_path, env={}) as ws:
        assert latest_turn(ws.database, "tiny").step == "train"  # type: ignore[union-attr]
        result = resume_turn(ws)
        assert result.status == "promoted"
        assert min(steps) == 21  # steps 1-20 came from the checkpoint
        assert [a.ref for a in ws.models.adapters()] == ["tiny@1"]
