"""Bad input never moves the alias: nothing curated stops the turn, errors fail it."""

from __future__ import annotations

from pathlib import Path

from feilun.app.flywheel import resume_turn, run_turn
from feilun.app.flywheel.turns import latest_turn
from feilun.app.workspace import Workspace
from feilun.data.datasets import save_dataset

from .conftest import RECIPES, tiny_config

SHORT = {
    "train.epochs": 2,
    "train.warmup_steps": 0,
}  # a short run: these tests are about what happens around it


def test_curation_with_nothing_usable_stops_the_turn(ws: Workspace, tmp_path: Path) -> None:
    curate = {"rules": str(RECIPES / "curate.yaml"), "dataset": "tiny-feedback"}
    result = run_turn(ws, tiny_config(tmp_path, curate=curate))
    assert result.status == "stopped"
    assert result.reason.startswith("curation produced nothing usable")
    assert result.candidate is None and result.gate is None
    assert ws.models.alias("prod") is None and ws.models.adapters() == []
    assert Path(result.report_path).is_file()


def test_a_training_failure_fails_the_turn_and_keeps_the_incumbent(
    ws: Workspace, tmp_path: Path
) -> None:
    ws.models.set_alias("prod", "tiny")
    save_dataset(ws.catalog, ws.artifacts, "broken", [{"id": "x", "text": "no conversation"}])
    train = {"recipe": str(RECIPES / "../train/tiny_sft_lora.yaml"), "datasets": ["broken"]}
    result = run_turn(ws, tiny_config(tmp_path, train=train))
    assert result.status == "failed"
    assert result.reason.startswith("train: ")
    assert ws.models.alias("prod").target == "tiny@1"
    assert ws.models.adapters() == []


def test_a_gate_error_never_promotes_and_resumes_at_the_gate(ws: Workspace, tmp_path: Path) -> None:
    rules = tmp_path / "gate.yaml"
    rules.write_text("target: {task: facts, min_delta: nope}\n")
    recipe = str(RECIPES / "../train/tiny_sft_lora.yaml")
    train = {"recipe": recipe, "datasets": ["facts"], "overrides": SHORT}
    result = run_turn(ws, tiny_config(tmp_path, train=train, gate={"rules": str(rules)}))
    assert result.status == "failed"
    assert result.reason.startswith("gate: invalid gate rules")
    assert ws.models.alias("prod") is None

    rules.write_text("target: {task: facts, min_delta: 0.9}\nsafety: null\n")
    resumed = resume_turn(ws)  # the fixed rules file is read again; nothing before is redone
    assert (resumed.number, resumed.status, resumed.gate["verdict"]) == (1, "rejected", "blocked")
    assert latest_turn(ws.database).outputs("train")["run_id"] == resumed.id
    assert ws.models.alias("prod") is None
