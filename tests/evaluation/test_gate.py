"""The gate on real MMLU items: it passes a genuinely better tiny model and blocks a degraded one.

`better` is the random tiny model fine-tuned for five steps on the items' answers; `degraded`
is `better` with noise added to every weight. All three are scored by option log-likelihood.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.evaluation.gate import GateRules, evaluate_gate
from feilun.evaluation.items import LETTERS, load_mc
from feilun.evaluation.mc import STYLES, render_context
from feilun.models.tiny import build_tiny_model

from .conftest import shared

RULES = "target: {task: mmlu, min_delta: 0.1, max_p_value: 0.05}\nmax_drop: 0.02\nsafety: null\n"


def _train(model, tokenizer, contexts: list[str], answers: list[str], steps: int) -> None:
    rows = []
    for context, answer in zip(contexts, answers, strict=True):
        context_ids = tokenizer.encode(context, add_special_tokens=False)
        whole = tokenizer.encode(context + " " + answer, add_special_tokens=False)
        rows.append((context_ids, whole[len(context_ids) :]))
    width = max(len(a) + len(b) for a, b in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)  # (B, T)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for r, (context_ids, target) in enumerate(rows):
        ids[r, : len(context_ids) + len(target)] = torch.tensor(context_ids + target)
        mask[r, : len(context_ids) + len(target)] = 1
        for k, token in enumerate(target):
            labels[r, len(context_ids) - 1 + k] = token
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def gate_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """24 short MMLU val items as JSONL, and the base, better and degraded model folders."""
    folder = tmp_path_factory.mktemp("gate")
    base, tokenizer = build_tiny_model(seed=0, init_std=0.3)
    style = STYLES["mmlu"]
    items = [
        i
        for i in load_mc(shared("mmlu", "val.jsonl")).items
        if len(tokenizer.encode(render_context(i, [], style))) < 200
    ][:24]
    data = folder / "mmlu.jsonl"  # `feilun eval mc` names the task after the file: mmlu
    rows = [
        {
            "id": i.id,
            "subject": i.subject,
            "question": i.question,
            "choices": list(i.choices),
            "answer": LETTERS[i.answer],
        }
        for i in items
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    paths = {"data": data}
    better = copy.deepcopy(base)
    contexts = [render_context(i, [], style) for i in items]
    _train(better, tokenizer, contexts, [LETTERS[i.answer] for i in items], steps=5)
    degraded = copy.deepcopy(better)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for weight in degraded.parameters():
            weight.add_(torch.randn(weight.shape, generator=generator) * 0.3)
    for name, model in (("base", base), ("better", better), ("degraded", degraded)):
        paths[name] = folder / name
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def _invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout


def test_gate_passes_a_better_model_and_blocks_a_degraded_one(
    env: dict[str, str], gate_setup: dict[str, Path], tmp_path: Path
) -> None:
    rules = tmp_path / "gate.yaml"
    rules.write_text(RULES, encoding="utf-8")
    reports = {}
    for name in ("base", "better", "degraded"):
        assert _invoke(env, "models", "add", name, "--path", str(gate_setup[name]))[0] == 0
        code, out = _invoke(
            env,
            "eval",
            "mc",
            str(gate_setup["data"]),
            "--model",
            name,
            "--format",
            "mmlu",
            "--json",
        )
        assert code == 0, out
        reports[name] = json.loads(out)
    accuracy = {name: r["accuracy"] for name, r in reports.items()}
    assert accuracy["better"] >= accuracy["base"] + 0.5, accuracy
    assert accuracy["degraded"] <= accuracy["better"] - 0.5, accuracy

    def gate(candidate: str, incumbent: str) -> tuple[int, dict]:
        code, out = _invoke(
            env,
            "eval",
            "gate",
            "--candidate",
            reports[candidate]["report"],
            "--incumbent",
            reports[incumbent]["report"],
            "--rules",
            str(rules),
            "--json",
        )
        return code, json.loads(out)

    code, verdict = gate("better", "base")
    assert code == 0 and verdict["passed"] and verdict["reasons"] == [], verdict
    target = verdict["comparison"][0]
    assert target["mcnemar"]["p_value"] < 0.001 and target["mcnemar"]["b_only_right"] >= 12

    code, verdict = gate("degraded", "better")
    assert code == 3 and not verdict["passed"]
    assert len(verdict["reasons"]) == 1 and verdict["reasons"][0].startswith("mmlu accuracy")

    code, verdict = gate("better", "better")  # the same model again is no improvement
    assert code == 3 and "need >= +0.1" in verdict["reasons"][0]
    code, out = _invoke(
        env, "eval", "compare", reports["better"]["report"], reports["degraded"]["report"]
    )
    assert code == 0 and "mmlu" in out


def _payload(model: str, tasks: list[dict]) -> dict:
    return {"model": model, "suite": "s", "seed": 1, "tasks": tasks}


def _task(
    name: str, scores: list[float], kind: str = "mc", sha: str = "sha256:x", **metrics: float
) -> dict:
    items = [{"id": str(i), "score": s} for i, s in enumerate(scores)]
    value = sum(scores) / len(scores)
    all_metrics = {"accuracy": value, **metrics}
    return {
        "name": name,
        "kind": kind,
        "sha256": sha,
        "primary": "accuracy",
        "n": len(scores),
        "errors": 0,
        "items": items,
        "metrics": {k: {"value": v, "low": v, "high": v} for k, v in all_metrics.items()},
    }


def test_gate_checks_other_tasks_safety_errors_and_data() -> None:
    rules = GateRules.model_validate(
        {"target": {"task": "t", "min_delta": 0.1}, "max_drop": 0.05, "max_error_rate": 0.1}
    )
    up = [1.0] * 30 + [0.0] * 10
    down = [0.0] * 30 + [1.0] * 10
    incumbent = _payload(
        "old",
        [
            _task("t", down),
            _task("other", [1.0] * 40),
            _task("safe", [1.0] * 40, kind="safety", refusal_rate=1.0, false_refusal_rate=0.0),
        ],
    )
    candidate = _payload(
        "new",
        [
            _task("t", up),
            _task("other", [1.0] * 36 + [0.0] * 4, sha="sha256:y"),
            _task("safe", [1.0] * 40, kind="safety", refusal_rate=0.9, false_refusal_rate=0.1),
        ],
    )
    candidate["tasks"][0]["errors"] = 10  # 10 of 50 items unscorable
    verdict = evaluate_gate(rules, candidate, incumbent)
    failed = {c["check"] for c in verdict["checks"] if not c["passed"]}
    assert failed == {
        "no_drop:other",
        "data:other",
        "refusal:safe",
        "false_refusal:safe",
        "errors:t",
    }
    assert any(c["check"] == "target" and c["passed"] for c in verdict["checks"])
    missing = GateRules.model_validate({"target": {"task": "nope"}})
    assert "not in both reports" in evaluate_gate(missing, candidate, incumbent)["reasons"][0]
