"""The gate on a named metric: qa's `em` where it and the primary `f1` disagree.

`new` answers half the boxes exactly and half wrongly; `old` answers every box wordily (em 0,
f1 0.8). So em improves significantly while f1 drops: the gate's verdict depends on the metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError
from feilun.evaluation.gate import load_rules

from .test_report import invoke, make_reports


def _gate(env: dict[str, str], rules: Path, text: str, reports: dict[str, str]) -> tuple[int, str]:
    rules.write_text(text, "utf-8")
    args = ["eval", "gate", "--candidate", reports["new"], "--incumbent", reports["old"]]
    result = CliRunner().invoke(app, [*args, "--rules", str(rules), "--json"], env=env)
    return result.exit_code, result.stdout or str(result.exception)


def test_the_gate_tests_the_metric_the_rules_name(env: dict[str, str], tmp_path: Path) -> None:
    reports = make_reports(env, tmp_path)
    rules = tmp_path / "gate.yaml"
    base = "max_drop: 0.02\nsafety: null\n"

    code, out = _gate(
        env, rules, "target: {task: boxes, metric: em, min_delta: 0.2}\n" + base, reports
    )
    verdict = json.loads(out)
    assert code == 0 and verdict["passed"], verdict["reasons"]
    target = next(c for c in verdict["checks"] if c["check"] == "target")
    assert target["detail"].startswith("boxes em 0.0000 -> 0.5000 (+0.5000")
    compared = verdict["comparison"][0]
    assert compared["metric"] == "em" and compared["mcnemar"]["b_only_right"] == 20
    assert compared["mcnemar"]["p_value"] < 1e-5

    code, out = _gate(env, rules, "target: {task: boxes, min_delta: 0.2}\n" + base, reports)
    verdict = json.loads(out)  # the primary metric, f1, fell from 0.78 to 0.5
    assert code == 3 and verdict["reasons"][0].startswith("boxes f1 0.7800 -> 0.5000")

    # options improves; boxes' f1 drop blocks unless the no-drop check reads its em
    target = "target: {task: options, min_delta: 0.5, max_p_value: 0.2}\n"  # 4 items
    code, out = _gate(env, rules, target + base, reports)
    assert code == 3 and json.loads(out)["reasons"][0].startswith("boxes f1")
    code, out = _gate(env, rules, target + base + "drop_metrics: {boxes: em}\n", reports)
    assert code == 0, out


def test_a_metric_the_task_lacks_is_an_error_naming_its_metrics(
    env: dict[str, str], tmp_path: Path
) -> None:
    reports = make_reports(env, tmp_path)
    rules = tmp_path / "gate.yaml"
    code, out = _gate(env, rules, "target: {task: boxes, metric: bleu}\nsafety: null\n", reports)
    assert code == 1
    assert (
        "target.metric=bleu: task 'boxes' has no metric 'bleu' (its metrics: contains, em, f1)"
        in out
    )
    assert "set target.metric to one of: contains, em, f1" in out
    code, out = _gate(
        env, rules, "target: {task: options, metric: macro_accuracy}\nsafety: null\n", reports
    )
    assert code == 1 and "no per-item values of 'macro_accuracy'" in out
    assert "one of: accuracy" in out
    code, out = _gate(
        env, rules, "target: {task: options}\ndrop_metrics: {squad: em}\nsafety: null\n", reports
    )
    assert code == 1 and "drop_metrics.squad names task 'squad'" in out
    assert "(shared: boxes, options)" in out


def test_drop_metrics_cannot_name_the_target(tmp_path: Path) -> None:
    rules = tmp_path / "gate.yaml"
    rules.write_text("target: {task: boxes}\ndrop_metrics: {boxes: em}\n", "utf-8")
    with pytest.raises(ConfigError, match="set target.metric instead"):
        load_rules(rules)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A new empty workspace: the reports come from endpoints."""
    env = {"FEILUN_WORKSPACE": str(tmp_path / "ws")}
    invoke(env, "init")
    return env
