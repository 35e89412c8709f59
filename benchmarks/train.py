"""Training speed: feilun `sft_lora` vs Hugging Face `Trainer` + PEFT, same model, data, settings.

    .venv/bin/python benchmarks/train.py               # table on stdout, JSON in results/
    .venv/bin/python benchmarks/train.py --steps 8     # a quick run
    .venv/bin/python benchmarks/train.py --steps 30 --batch 4 --sides hf-trainer,feilun

Model: the packaged SmolLM2-135M-Instruct (fp32). Data: the first 80 items of the industry QA
sample (shared/data/industry/qa.jsonl) as chat rows: the evidence and the question from the
user, the short answer from the assistant. Both sides train LoRA (r=16, alpha=32, dropout 0.05
on q/k/v/o) with AdamW, lr 2e-4, 2 warmup steps then cosine, batch 8 = micro-batch 4 x 2
accumulation (or --batch), max 512 tokens, loss on assistant tokens only, clipping at 1.0,
seed 0, on the same tokenized examples in the same order: the Trainer reads them sequentially
in the order feilun's schedule draws them, every step full (80 is a multiple of the batch), so
the loss curves compare step for step (dropout masks still differ). Each side runs in its own
process (so peak RSS is its own), one after the other in the same run. tokens/s counts real
(unpadded) tokens from step 2 to the last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QA = HERE.parent.parent / "shared" / "data" / "industry" / "qa.jsonl"
RECIPE = HERE.parent / "recipes" / "train" / "smollm2_sft_lora.yaml"
MODEL = "smollm2-135m-instruct"
DATASET = "industry-qa"
SIDES = ("hf-trainer", "feilun", "feilun-packed")
LR, WARMUP, MICRO, SEQ, RANK, ALPHA, DROPOUT, SEED = 2e-4, 2, 4, 512, 16, 32, 0.05, 0
ROWS = 80  # a multiple of every batch size, so no step is short on either side
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def qa_rows() -> list[dict[str, Any]]:
    """The first ROWS QA items as chat rows: evidence + question → answer."""
    rows = []
    for line in QA.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        zh = item["lang"] == "zh"
        ask = (
            f"依据：{item['evidence']}\n问题：{item['question']}"
            if zh
            else (f"Based on: {item['evidence']}\nQuestion: {item['question']}")
        )
        messages = [
            {"role": "user", "content": ask},
            {"role": "assistant", "content": item["answer"]},
        ]
        rows.append({"id": item["id"], "messages": messages, "meta": {"lang": item["lang"]}})
    return rows[:ROWS]


def prepare(workspace: Path) -> None:
    """A workspace with SmolLM2 registered (and converted once) and the QA dataset saved."""
    from feilun.app.workspace import init_workspace
    from feilun.core import registry as plugins
    from feilun.data.datasets import save_dataset

    ws, _ = init_workspace(workspace, env={})
    try:
        save_dataset(ws.catalog, ws.artifacts, DATASET, qa_rows())
        base = ws.models.get(MODEL)
        plugins.lookup("model_sources", base.source).load(base.location, ws.models.cache_dir)
    finally:
        ws.close()


def run_feilun(workspace: Path, steps: int, batch: int, packing: bool) -> dict[str, Any]:
    """Our sft_lora recipe; per-step losses, tokens and times from its metrics.jsonl."""
    from feilun.app.workspace import opened
    from feilun.training.context import Resources
    from feilun.training.launch import execute_run
    from feilun.training.runs import read_metrics, start_run

    overrides = [
        f"dataset={DATASET}@1",
        f"train.max_steps={steps}",
        f"train.lr={LR}",
        f"train.warmup_steps={WARMUP}",
        "train.schedule=cosine",
        f"train.batch_size={batch}",
        f"train.micro_batch_size={min(MICRO, batch)}",
        f"train.seed={SEED}",
        "train.eval_every=0",
        f"data.max_seq_len={SEQ}",
        f"data.packing={str(packing).lower()}",
        "data.val_fraction=0",
        f"lora.rank={RANK}",
        f"lora.alpha={ALPHA}",
        f"lora.dropout={DROPOUT}",
        f"lora.targets=[{','.join(TARGETS)}]",
        "checkpoint.every_steps=0",
        f"adapter=bench-{'packed' if packing else 'plain'}",
    ]
    with opened(workspace, env={}) as ws:
        resources = Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
        run = start_run(resources, RECIPE, overrides)
        execute_run(resources, run)
        steps_logged = [m for m in read_metrics(run) if "loss" in m]
    return {
        "losses": [m["loss"] for m in steps_logged],
        "tokens": [m["tokens"] for m in steps_logged],
        "step_s": [m["tokens"] / m["tokens_per_s"] for m in steps_logged],
    }


def run_hf(workspace: Path, steps: int, batch: int) -> dict[str, Any]:
    """A plain transformers Trainer + PEFT run on the same tokenized examples, same order."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from feilun.app.workspace import opened
    from feilun.core import registry as plugins
    from feilun.training.collate import tokenize_chat_rows
    from feilun.training.recipe import TrainSection
    from feilun.training.schedule import plan_steps, step_examples

    with opened(workspace, env={}) as ws:
        base = ws.models.get(MODEL)
        model, tokenizer = plugins.lookup("model_sources", base.source).load(
            base.location, ws.models.cache_dir
        )
    # The weights were dequantised to fp32 on conversion, but the config still names GGUF as
    # their quantization, which the Trainer refuses to train: drop the stale marker.
    model.hf_quantizer, model.is_quantized = None, False
    model.config.__dict__.pop("quantization_config", None)
    examples, _ = tokenize_chat_rows(qa_rows(), tokenizer, base.chat_template, SEQ, "truncate")
    plan = plan_steps(len(examples), TrainSection(batch_size=batch, max_steps=steps))
    order = [i for step in range(steps) for i in step_examples(step, plan, SEED)]
    data = [{"input_ids": examples[i].input_ids, "labels": examples[i].labels} for i in order]
    torch.manual_seed(SEED)
    model = get_peft_model(
        model.train(),
        LoraConfig(
            r=RANK,
            lora_alpha=ALPHA,
            lora_dropout=DROPOUT,
            target_modules=TARGETS,
            task_type="CAUSAL_LM",
        ),
    )
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    counted = {"tokens": 0}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = pad(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks.append((time.perf_counter(), counted["tokens"]))

    class InOrder(Trainer):  # the benchmark's one change to the peer: feilun's example order
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

    micro = min(MICRO, batch)
    args = TrainingArguments(
        output_dir=str(workspace / "hf-out"),
        max_steps=steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=batch // micro,
        learning_rate=LR,
        warmup_steps=WARMUP,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=SEED,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = InOrder(
        model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[Clock()]
    )
    start = (time.perf_counter(), 0)
    trainer.train()
    points = [start, *marks]
    return {
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "tokens": [b[1] - a[1] for a, b in pairwise(points)],
        "step_s": [b[0] - a[0] for a, b in pairwise(points)],
    }


def side(name: str, workspace: Path, steps: int, batch: int) -> None:
    """Run one side in this process; print its figures as one JSON line."""
    if name == "hf-trainer":
        result = run_hf(workspace, steps, batch)
    else:
        result = run_feilun(workspace, steps, batch, packing=name == "feilun-packed")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result, "peak_rss_mb": peak_mb}))


def measure(name: str, workspace: Path, steps: int, batch: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--side",
        name,
        "--workspace",
        str(workspace),
        "--steps",
        str(steps),
        "--batch",
        str(batch),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    tokens, seconds = sum(result["tokens"][1:]), sum(result["step_s"][1:])
    result["tokens_per_s"] = tokens / seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8, help="Examples per optimizer step.")
    parser.add_argument("--sides", default=",".join(SIDES), help="Comma-separated sides to run.")
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--workspace", type=Path, help="Reuse a prepared workspace.")
    args = parser.parse_args()
    if ROWS % args.batch:
        parser.error(f"--batch must divide {ROWS}, the examples used, so every step is full")
    if args.side:
        side(args.side, args.workspace, args.steps, args.batch)
        return
    sides = [name for name in args.sides.split(",") if name]
    if "hf-trainer" not in sides or not set(sides) <= set(SIDES):
        parser.error(f"--sides must include hf-trainer and name only {', '.join(SIDES)}")
    with tempfile.TemporaryDirectory(prefix="feilun-bench-train-") as tmp:
        workspace = args.workspace or Path(tmp) / "ws"
        if not workspace.exists():
            prepare(workspace)
        results = {name: measure(name, workspace, args.steps, args.batch) for name in sides}
    report(results, args.steps, args.batch)


def report(results: dict[str, dict[str, Any]], steps: int, batch: int) -> None:
    base = results["hf-trainer"]
    print(
        f"\nLoRA SFT of {MODEL}, {steps} steps, batch {batch} (micro {min(MICRO, batch)}), "
        f"{ROWS} examples, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}\n"
    )
    header = ("side", "tokens/s", "x HF", "peak RSS MiB", "first loss", "last loss", "mean |dL|")
    print(f"{header[0]:<15}" + "".join(f"{h:>13}" for h in header[1:]))
    for name, r in results.items():
        gaps = [abs(a - b) for a, b in zip(r["losses"], base["losses"], strict=False)]
        print(
            f"{name:<15}{r['tokens_per_s']:>13.0f}{r['tokens_per_s'] / base['tokens_per_s']:>13.2f}"
            f"{r['peak_rss_mb']:>13.0f}{r['losses'][0]:>13.4f}{r['losses'][-1]:>13.4f}"
            f"{sum(gaps) / len(gaps):>13.4f}"
        )
    print("(mean |dL|: mean absolute loss difference per step against hf-trainer)")
    print(f"\n{'step':>5}" + "".join(f"{name:>15}" for name in results))
    for i in range(steps):
        cells = [r["losses"][i] if i < len(r["losses"]) else float("nan") for r in results.values()]
        print(f"{i + 1:>5}" + "".join(f"{c:>15.4f}" for c in cells))
    out = HERE / "results" / "train.json"
    out.parent.mkdir(exist_ok=True)
    summary = {"steps": steps, "batch": batch, "examples": ROWS, "results": results}
    out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
