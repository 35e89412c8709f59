"""`feilun governance filing-pack` for a freshly trained tiny adapter (and its audit trail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from feilun.cli.main import app

RECIPE = str(Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml")
ADAPTER = "tiny:greetings-sft-lora"


def invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _pack(env: dict[str, str], out: Path) -> dict[str, Any]:
    invoke(env, "governance", "filing-pack", "--model", ADAPTER, "--out", str(out))
    filing: dict[str, Any] = json.loads((out / "filing.json").read_text("utf-8"))
    return filing


def _save_safety_report(env: dict[str, str]) -> None:
    from feilun.app.workspace import opened
    from feilun.evaluation.reports import save_report

    task = {
        "name": "xstest",
        "kind": "safety",
        "n": 40,
        "errors": 0,
        "metrics": {"refusal_rate": {"value": 0.9}, "false_refusal_rate": {"value": 0.1}},
    }
    payload = {"suite": "safety", "model": ADAPTER, "wall_time_s": 1.0, "seed": 0, "tasks": [task]}
    with opened(None, env) as ws:
        save_report(ws.catalog, ws.artifacts, payload)


def test_the_pack_builds_for_a_trained_adapter(env: dict[str, str], tmp_path: Path) -> None:
    invoke(env, "train", "run", RECIPE, "train.max_steps=3", "--run-id", "f1")
    trained = json.loads(invoke(env, "audit", "list", "--action", "model.trained", "--json"))
    assert [e["target"] for e in trained["data"]] == ["tiny:greetings-sft-lora@1"]
    assert trained["data"][0]["details"]["dataset"] == "greetings@1"

    filing = _pack(env, tmp_path / "pack")
    assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == [
        "annex_iv.md",
        "annotation_rules.md",
        "filing.json",
        "filing.md",
        "user_agreement.md",
    ]
    assert filing["model"]["adapter"]["name"] == "greetings-sft-lora"
    assert [b["ref"] for b in filing["lineage"]["base_models"]] == ["tiny@1"]
    assert [d["ref"] for d in filing["lineage"]["datasets"]] == ["greetings@1"]
    assert filing["lineage"]["datasets"][0]["rows"] == 10
    assert filing["safety_assessment"]["status"] == "not run"
    lexicon = filing["keyword_library"]
    assert len(lexicon["by_group"]) == 5 and lexicon["terms"] > 0
    assert (
        lexicon["terms"]
        == sum(g["terms"] for g in lexicon["by_group"].values()) + (lexicon["allow_terms"])
    )
    assert filing["labelling"]["implicit_label"]["fields"][0] == "Label"
    assert filing["audit_log"]["intact"] and filing["audit_log"]["events"] >= 1
    annex = (tmp_path / "pack" / "annex_iv.md").read_text("utf-8")
    assert "tiny@1:greetings-sft-lora@1" in annex and "$" not in annex
    assert "not run" in (tmp_path / "pack" / "filing.md").read_text("utf-8")

    _save_safety_report(env)
    filing = _pack(env, tmp_path / "again")
    safety = filing["safety_assessment"]
    assert safety["status"] == "run"
    task = safety["results"][0]["tasks"]["xstest"]
    assert task == {
        "bank_size": 40,
        "scores": {"refusal_rate": 0.9, "false_refusal_rate": 0.1},
    }
    packs = json.loads(invoke(env, "audit", "list", "--action", "governance.filing_pack", "--json"))
    assert len(packs["data"]) == 2
