from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError
from feilun.evaluation.gate import load_rules
from feilun.evaluation.suites import load_suite

from .conftest import shared

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes" / "eval").glob("*.yaml"))


def invoke(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.stdout


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_every_shipped_recipe_is_valid(recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = recipe.read_text(encoding="utf-8")
    assert text.startswith("# ") and "feilun eval " in text.split("\n", 3)[2]  # what, then how
    if "tasks" not in yaml.safe_load(text):
        load_rules(recipe)
        return
    suite, _ = load_suite(recipe)
    monkeypatch.chdir(ROOT)  # suites name the shared data from the repository root
    for task in suite.tasks:
        for path in (task.path, task.fewshot_path):
            if path:
                shared(*Path(path).parts[3:])  # skip when the shared data is absent
                assert Path(path).exists(), path


def test_bad_suites_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\ntasks:\n  - {name: a, kind: essay, path: x.jsonl}\n", "utf-8")
    with pytest.raises(
        ConfigError, match=r"unknown task kind 'essay'; known kinds: mc, qa, safety, rag, judge"
    ):
        load_suite(path)
    path.write_text(
        "name: s\ntasks:\n  - {name: a, kind: mc, path: x}\n  - {name: a, kind: qa, path: y}\n",
        "utf-8",
    )
    with pytest.raises(ConfigError, match="repeated: a"):
        load_suite(path)
    path.write_text("name: s\ntasks:\n  - {name: a, kind: mc, path: x, shotz: 5}\n", "utf-8")
    with pytest.raises(ConfigError, match=r"tasks\.0\.shotz: Extra inputs"):
        load_suite(path)


def test_mc_on_a_csv_folder_prints_json_and_a_stored_report(env: dict[str, str]) -> None:
    folder = shared("cmmlu", "original", "dev")
    out = json.loads(
        invoke(env, "eval", "mc", str(folder), "-m", "tiny", "--limit", "10", "--json")
    )
    assert out["n"] == 10 and out["errors"] == 0 and out["scoring"] == "loglikelihood"
    assert set(out["subjects"]) == {"agronomy", "anatomy"}  # 5 + 5, the first files
    assert 0.0 <= out["accuracy"] <= 1.0 and out["intervals"]["accuracy"][0] <= out["accuracy"]
    shown = json.loads(invoke(env, "eval", "show", out["report"], "--json"))
    assert shown["scores"]["dev/accuracy"] == out["accuracy"]
    assert shown["tasks"][0]["config"]["format"] == "auto"
    assert shown["tasks"][0]["path"] == str(folder)
    assert out["report"] in invoke(env, "eval", "list")
    table = invoke(env, "eval", "show", "mc-dev@1")
    assert "accuracy" in table and "macro_accuracy" in table


def test_malformed_rows_are_reported_and_unknown_reports_listed(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "physics_val.csv"
    path.write_text("What is 2+2?,3,4,5,6,B\nbroken,1\nNo answer,a,b,c,d,\n", encoding="utf-8")
    out = invoke(env, "eval", "mc", str(path), "-m", "tiny")
    assert f"skipped {path}:2: 2 columns" in out
    assert f"skipped {path}:3: no answer" in out
    result = CliRunner().invoke(app, ["eval", "show", "nope"], env=env)
    assert result.exit_code != 0 and "no eval report named 'nope'" in str(result.exception)
    result = CliRunner().invoke(app, ["eval", "mc", str(path), "-m", "tiny", "--format", "x"])
    assert "invalid option: --format: Input should be 'auto', 'mmlu' or 'ceval'" in str(
        result.exception
    )


def test_run_a_suite_then_compare_two_reports(env: dict[str, str], tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps({"question": "法国的首都是哪里？", "answers": ["巴黎"]}, ensure_ascii=False)
        + "\n"
        + json.dumps({"question": "What is two plus two?", "answers": ["four"]})
        + "\n",
        encoding="utf-8",
    )
    suite = tmp_path / "suite.yaml"
    mmlu = shared("mmlu", "val.jsonl")
    suite.write_text(
        f"name: small\ntasks:\n  - {{name: mmlu, kind: mc, path: {mmlu}, format: mmlu}}\n"
        f"  - {{name: qa, kind: qa, path: {qa.name}, max_tokens: 8}}\n",
        encoding="utf-8",
    )
    first = json.loads(
        invoke(env, "eval", "run", str(suite), "-m", "tiny", "--limit", "6", "--json")
    )
    assert [t["task"] for t in first["tasks"]] == ["mmlu", "qa"]
    assert first["tasks"][1]["n"] == 2 and {"em", "f1", "contains"} <= set(first["tasks"][1])
    second = json.loads(
        invoke(env, "eval", "run", str(suite), "-m", "tiny", "--limit", "6", "--json")
    )
    compared = json.loads(
        invoke(env, "eval", "compare", first["report"], second["report"], "--json")
    )
    assert [t["task"] for t in compared["tasks"]] == ["mmlu", "qa"]
    mmlu_delta = compared["tasks"][0]
    assert mmlu_delta["paired"]["delta"] == 0.0 and mmlu_delta["mcnemar"]["p_value"] == 1.0
    assert mmlu_delta["flipped"]["n_to_right"] == mmlu_delta["flipped"]["n_to_wrong"] == 0
    assert "delta" in invoke(env, "eval", "compare", first["report"], second["report"])
