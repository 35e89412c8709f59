"""`feilun train …`, `feilun recipes …` and `feilun models merge` in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError, NotFound

RECIPE = str(Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml")


def invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_of_every_command() -> None:
    for command in (
        ["train", "run"],
        ["train", "resume"],
        ["train", "show"],
        ["train", "list"],
        ["recipes", "ls"],
        ["recipes", "cp"],
        ["recipes", "validate"],
        ["models", "merge"],
    ):
        result = CliRunner().invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_run_show_list_resume_merge(env: dict[str, str], tmp_path: Path) -> None:
    out = invoke(env, "train", "run", RECIPE, "train.max_steps=6", "--run-id", "c1")
    assert out.splitlines()[0] == "run c1"
    assert "tiny:greetings-sft-lora@1" in out and "report:" in out

    shown = json.loads(invoke(env, "train", "show", "c1", "--json"))
    assert shown["status"] == "completed" and shown["step"] == 6 and len(shown["losses"]) == 6
    assert shown["recipe"]["train"]["max_steps"] == 6
    assert "completed" in invoke(env, "train", "show", "c1")
    assert "c1" in invoke(env, "train", "list")
    assert json.loads(invoke(env, "train", "list", "--json"))[0]["id"] == "c1"

    with pytest.raises(ConfigError, match="already completed"):
        CliRunner().invoke(app, ["train", "resume", "c1"], env=env, catch_exceptions=False)
    with pytest.raises(ConfigError, match="exists already"):
        CliRunner().invoke(
            app, ["train", "run", RECIPE, "--run-id", "c1"], env=env, catch_exceptions=False
        )
    with pytest.raises(NotFound, match="newest runs: c1"):
        CliRunner().invoke(app, ["train", "show", "nope"], env=env, catch_exceptions=False)

    merged = tmp_path / "merged"
    invoke(env, "models", "merge", "tiny:greetings-sft-lora", "--out", str(merged))
    assert (merged / "model.safetensors").is_file() and (merged / "chat_template.jinja").is_file()


def test_json_run_prints_the_manifest(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["train", "run", RECIPE, "train.max_steps=3", "--json"],
        env=env,
        catch_exceptions=False,
    )
    manifest = json.loads(result.stdout)
    assert result.stderr.startswith(f"run {manifest['run_id']}")
    assert manifest["metrics"]["steps"] == 3


def test_recipes_ls_cp_validate(env: dict[str, str], tmp_path: Path) -> None:
    listed = json.loads(invoke(env, "recipes", "ls", "--json"))
    names = {r["name"] for r in listed}
    assert {"tiny_sft_lora", "smollm2_sft_lora", "tiny_dpo_lora", "tiny_cpt_lora"} <= names
    invoke(env, "recipes", "cp", "tiny_sft_lora", str(tmp_path))
    copied = tmp_path / "tiny_sft_lora.yaml"
    assert copied.read_text(encoding="utf-8") == Path(RECIPE).read_text(encoding="utf-8")
    table = invoke(env, "recipes", "validate", str(copied), "lora.rank=4")
    assert "valid (sft_lora)" in table and "Peak learning rate" in table
    assert (
        json.loads(invoke(env, "recipes", "validate", str(copied), "--json"))["lora"]["rank"] == 8
    )
    with pytest.raises(ConfigError, match=r"train.epoch \(did you mean train.epochs\?\)"):
        CliRunner().invoke(
            app, ["recipes", "validate", str(copied), "train.epoch=2"], catch_exceptions=False
        )
    with pytest.raises(NotFound, match="no shipped recipe 'tiny'"):
        CliRunner().invoke(app, ["recipes", "cp", "tiny", str(tmp_path)], catch_exceptions=False)
