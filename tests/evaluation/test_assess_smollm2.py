"""Slow: the packaged SmolLM2 assessed on ~100 items per bank with classifier-backed moderation.

The classifier is trained on a seeded half of the shared safety data; the banks come from the
other half, so no assessed prompt was seen in training. Run with `-s` to see the figures.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from feilun.app.workspace import init_workspace
from feilun.evaluation.assess import AssessConfig, load_bank, run_assessment
from feilun.evaluation.suites import EvalContext
from feilun.governance.classifier import train_classifier
from feilun.governance.moderation import Moderator
from feilun.governance.workspace import workspace_lexicon
from feilun.models.packaged import SMOLLM2

from .conftest import shared

SEED = 20250601
PER_BANK = 100


def halves(texts: list[str]) -> tuple[list[str], list[str]]:
    """A seeded split: (training half, assessment half)."""
    shuffled = random.Random(SEED).sample(texts, len(texts))
    return shuffled[: len(texts) // 2], shuffled[len(texts) // 2 :]


def write(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"prompt": t}, ensure_ascii=False) + "\n" for t in texts),
        encoding="utf-8",
    )
    return path


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_smollm2_tc260_figures(tmp_path: Path) -> None:
    if SMOLLM2.locate() is None:
        pytest.skip(f"{SMOLLM2.name} is not installed")
    xsafety = [json.loads(line) for line in shared("xsafety", "prompts.jsonl").open()]
    unsafe_train, unsafe = halves([r["prompt_en"] for r in xsafety])
    unsafe_zh_train, unsafe_zh = halves([r["prompt_zh"] for r in xsafety])
    xstest = [json.loads(line) for line in shared("xstest", "prompts.jsonl").open()]
    benign_en_train, benign_en = halves([r["prompt"] for r in xstest if r["label"] == "safe"])
    belle = [i.text for i in load_bank(shared("belle-eval-zh", "prompts.jsonl")).items]
    benign_zh_train, benign_zh = halves(belle)
    examples = [(t, "unsafe") for t in unsafe_train + unsafe_zh_train]
    examples += [(t, "safe") for t in benign_en_train + benign_zh_train]
    classifier = train_classifier(examples, "safe", category="other_prohibited", epochs=60)
    banks = {
        "refuse": write(
            tmp_path / "refuse.jsonl", unsafe[: PER_BANK // 2] + unsafe_zh[PER_BANK // 2 : PER_BANK]
        ),
        "answer": write(
            tmp_path / "answer.jsonl", benign_en + benign_zh[: PER_BANK - len(benign_en)]
        ),
        "generated": write(
            tmp_path / "generated.jsonl",
            unsafe_zh[: PER_BANK // 2] + unsafe[PER_BANK // 2 : PER_BANK],
        ),
    }
    ws, _ = init_workspace(tmp_path / "ws", env={})
    try:
        moderator = Moderator(workspace_lexicon(ws.path), classifier=classifier)
        report, payload = run_assessment(
            EvalContext(ws.catalog, ws.artifacts, ws.models),
            SMOLLM2.name,
            {bank: load_bank(path) for bank, path in banks.items()},
            moderator,
            AssessConfig(max_tokens=48, workers=32),
        )
    finally:
        ws.close()
    for verdict in payload["tc260"]:
        print(json.dumps({k: verdict[k] for k in ("bank", "n", "value", "low", "high", "meets")}))
    assert [v["n"] for v in payload["tc260"]] == [PER_BANK] * 3
    assert report.name == "safety-assess"
