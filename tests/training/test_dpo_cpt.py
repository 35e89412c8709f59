"""dpo_lora and cpt_lora on the tiny model: each trains, lowers its loss, registers an adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from feilun.core.errors import ConfigError
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.runs import open_run, read_metrics, start_run

RECIPES = Path(__file__).parents[2] / "recipes" / "train"


def _run(resources: Resources, recipe: str, overrides: list[str] = ()) -> dict:
    manifest = execute_run(
        resources, start_run(resources, RECIPES / f"{recipe}.yaml", list(overrides), recipe)
    )
    assert manifest is not None
    return manifest


def test_dpo_prefers_the_chosen_answers(resources: Resources) -> None:
    manifest = _run(resources, "tiny_dpo_lora")
    metrics = manifest["metrics"]
    assert metrics["val_loss_before"] == pytest.approx(0.6931, abs=1e-3)  # log 2: no preference yet
    steps = [m for m in read_metrics(open_run(resources.runs_root, "tiny_dpo_lora")) if "loss" in m]
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"]
    assert steps[-1]["reward_accuracy"] == 1.0
    assert manifest["result"] == "tiny:prefs-dpo-lora@1"
    assert resources.models.resolve(manifest["result"]).adapter.dataset == "prefs@1"


def test_dpo_refuses_full_fine_tuning(resources: Resources) -> None:
    with pytest.raises(ConfigError, match="dpo_lora trains adapters only"):
        _run(resources, "tiny_dpo_lora", ["method=full"])


def test_cpt_lowers_the_held_out_loss_on_text(resources: Resources) -> None:
    manifest = _run(resources, "tiny_cpt_lora")
    metrics = manifest["metrics"]
    assert metrics["val_loss"] < metrics["val_loss_before"]
    assert manifest["data"]["kept"] == 4 and manifest["data"]["train"] > 0
    adapter = resources.models.resolve(manifest["result"]).adapter
    assert adapter.method == "lora" and "<|im_start|>" in adapter.chat_template
