"""`feilun data synth-qa` in-process, on a workspace with a real tiny model registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import Document

TEXTS = {
    "laws/gas.md": "第五条 国务院建设主管部门负责全国的燃气管理工作。"
    "县级以上地方人民政府燃气管理部门负责本行政区域内的燃气管理工作。",
    "laws/meter.md": "Each operator shall inspect every gas meter once a year and keep the "
    "inspection records for five years.",
}


def invoke(env: dict[str, str], *args: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.fixture
def workspace(env: dict[str, str], tiny_model_dir: Path) -> dict[str, str]:
    """A workspace with the tiny random Llama as `tiny` and a collection `laws` of two texts."""
    from feilun.app.workspace import opened

    invoke(env, "init")
    with opened(None, env) as ws:
        ws.models.add("tiny", "safetensors", str(tiny_model_dir))
        for name, text in TEXTS.items():
            ws.catalog.save(Document(name=name, collection="laws", text=text))
    return env


def test_help() -> None:
    result = CliRunner().invoke(app, ["data", "synth-qa", "--help"])
    assert result.exit_code == 0
    for option in ("--dataset", "--model", "--per-chunk", "--max-passages", "--seed", "--language"):
        assert option in result.stdout


def test_synth_qa_saves_a_dataset_and_counts_every_candidate(workspace: dict[str, str]) -> None:
    args = ("data", "synth-qa", "laws", "-d", "laws-qa", "--model", "tiny", "--seed", "3")
    stdout, stderr = invoke(workspace, *args)
    assert "passages" in stderr and "2/2" in stderr  # the progress bar
    assert "synth-qa laws with tiny@1" in stdout and "candidates" in stdout
    assert "saved dataset laws-qa@1" in stdout

    again = json.loads(invoke(workspace, *args, "--json")[0])
    assert again["dataset"]["ref"] == "laws-qa@2" and again["passages"] == 2
    rejected = sum(again["rejected_by_reason"].values())
    assert again["generated"] == again["kept"] + rejected >= 2  # a random model writes junk
    assert again["dataset"]["meta"]["rejected_count"] == rejected
    manifest = json.loads(invoke(workspace, "data", "show", "laws-qa@1", "--json")[0])["dataset"]
    assert manifest["content_hash"] == again["dataset"]["content_hash"]  # same seed, same rows
    recipe = manifest["recipe"]
    assert (recipe["model"], recipe["seed"], recipe["collection"]) == ("tiny@1", 3, "laws")
    assert len(manifest["inputs"]) == 2  # lineage: the documents of `laws`
    shown = json.loads(invoke(workspace, "data", "show", "laws-qa@1", "--rejected", "--json")[0])
    assert {r["operator"] for r in shown["rejected"]} == {"synth_qa"}


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("nowhere", "-d", "qa", "--model", "tiny"), NotFound, "no documents"),
        (("laws", "-d", "qa", "--model", "missing"), NotFound, "unknown model 'missing'"),
        (("laws", "-d", "a b", "--model", "tiny"), ConfigError, "not allowed"),
    ],
)
def test_errors_name_the_problem(
    workspace: dict[str, str], args: tuple[str, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        CliRunner().invoke(app, ["data", "synth-qa", *args], env=workspace, catch_exceptions=False)
