"""Quality check on a real model: LoRA SFT of the packaged SmolLM2 on the industry QA sample
lowers the held-out loss of the QA split below the base model's (slow; minutes on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feilun.app.workspace import init_workspace
from feilun.data.datasets import save_dataset
from feilun.models.packaged import SMOLLM2
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.runs import start_run

QA = Path(__file__).parents[3] / "shared" / "data" / "industry" / "qa.jsonl"
RECIPE = Path(__file__).parents[2] / "recipes" / "train" / "smollm2_sft_lora.yaml"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1800)  # ~5-15 min on a shared 2-core CPU; the suite's 300 s is too short
def test_lora_sft_lowers_held_out_qa_loss(tmp_path: Path) -> None:
    if SMOLLM2.locate() is None or not QA.is_file():
        pytest.skip(f"needs {SMOLLM2.install_hint} and {QA}")
    rows = []
    for line in QA.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        messages = [
            {"role": "user", "content": item["question"]},
            {"role": "assistant", "content": item["answer"]},
        ]
        rows.append({"id": item["id"], "messages": messages, "meta": {"doc": item["doc"]}})
    ws, _ = init_workspace(tmp_path / "ws", env={})
    try:
        save_dataset(ws.catalog, ws.artifacts, "handbook-qa", rows)
        resources = Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
        run = start_run(
            resources,
            RECIPE,
            [
                "data.val_fraction=0.2",
                "data.max_seq_len=256",
                "train.eval_every=0",
                "train.epochs=2",
            ],
        )
        manifest = execute_run(resources, run)
    finally:
        ws.close()
    assert manifest is not None
    metrics = manifest["metrics"]
    print(
        f"held-out QA loss {metrics['val_loss_before']:.4f} -> {metrics['val_loss']:.4f} "
        f"in {metrics['wall_time_s'] / 60:.1f} min"
    )
    assert metrics["val_loss"] < metrics["val_loss_before"]
