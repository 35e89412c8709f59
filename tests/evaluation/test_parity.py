"""Train/serve parity: a `parity` task compares a model in process with it served by the gateway,
and the gate's `parity` rule blocks a candidate whose served answers differ."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pydantic
import pytest

from feilun.app.serve import build_server_app
from feilun.app.workspace import Workspace, opened
from feilun.core.errors import BadInput
from feilun.evaluation.gate import GateRules, evaluate_gate
from feilun.evaluation.parity import load_parity
from feilun.evaluation.reports import load_payload
from feilun.evaluation.suites import EvalContext, Suite, run_suite
from feilun.models.tiny import build_tiny_model
from feilun.serving.accounts import Accounts

PROMPTS = Path("recipes/eval/parity-prompts.jsonl")


@pytest.fixture
def served(
    tiny_workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Any], AbstractContextManager[str]],
) -> Iterator[Workspace]:
    """Two tiny models whose greedy answers vary (`mine`, `other`), and each as the running
    gateway serves it: `served-mine`, `served-other` (OpenAI-compatible upstream models)."""
    with opened(tiny_workspace) as ws:
        for seed, name in enumerate(("mine", "other")):
            model, tokenizer = build_tiny_model("llama", seed=seed, init_std=0.3)
            model.save_pretrained(tmp_path / name)
            tokenizer.save_pretrained(tmp_path / name)
            ws.models.add(name, "safetensors", str(tmp_path / name))
        accounts = Accounts(ws.database)
        secret, _ = accounts.create_key(accounts.create_tenant("eval").id)
        monkeypatch.setenv("PARITY_KEY", secret)
        with serve_app(build_server_app(ws)) as url:
            for name in ("mine", "other"):
                meta = {"upstream_model": name, "api_key_env": "PARITY_KEY"}
                ws.models.add(f"served-{name}", "upstream", f"{url}/v1", meta=meta)
            yield ws


def _parity_payload(ws: Workspace, served_name: str) -> dict[str, Any]:
    suite = Suite.model_validate(
        {
            "name": "parity",
            "tasks": [
                {"name": "parity", "kind": "parity", "path": str(PROMPTS), "served": served_name}
            ],
        }
    )
    report = run_suite(EvalContext(ws.catalog, ws.artifacts, ws.models), suite, "mine")
    return load_payload(ws.artifacts, report)


def test_the_gateway_serves_the_same_greedy_answers_and_the_gate_checks_it(
    served: Workspace,
) -> None:
    same = _parity_payload(served, "served-mine")
    task = same["tasks"][0]
    assert task["kind"] == "parity" and task["n"] == 6 and task["errors"] == 0
    assert task["metrics"]["match_rate"]["value"] == 1.0
    answers = {row["in_process"] for row in task["items"]}
    assert len(answers) > 1 and all(a.strip() for a in answers)  # real, varied answers compared

    other = _parity_payload(served, "served-other")  # a different model behind the endpoint
    assert other["tasks"][0]["metrics"]["match_rate"]["value"] < 0.5

    rules = GateRules.model_validate({"target": {"task": "parity"}, "parity": {}})
    for payload, passed in ((same, True), (other, False)):
        verdict = evaluate_gate(rules, payload, same)
        (check,) = [c for c in verdict["checks"] if c["check"] == "parity:parity"]
        assert check["passed"] is passed, check
    required = GateRules.model_validate(
        {"target": {"task": "x"}, "parity": {"task": "serve", "required": True}}
    )
    verdict = evaluate_gate(required, same, same)
    assert "the candidate's report has no parity task 'serve'" in verdict["reasons"]


def test_bad_parity_input_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="a parity task needs `served`"):
        Suite.model_validate({"name": "s", "tasks": [{"name": "p", "kind": "parity", "path": "x"}]})
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": ""}\nnot json\n{"question": "q"}\n', "utf-8")
    with pytest.raises(BadInput, match=r"no usable parity rows \(3 skipped: line 1: no `prompt`"):
        load_parity(bad)
