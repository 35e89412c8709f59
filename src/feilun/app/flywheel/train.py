"""The train step: one run of the configured recipe on the turn's datasets, on the base model.

The datasets (plus the curated SFT rows, or preference pairs for a DPO recipe) are merged
into one version of `<name>-train` when there is more than one. The run id is the turn's id,
so a resumed turn continues its run from the newest checkpoint (or reuses it, finished).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feilun.app.flywheel.context import TurnContext
from feilun.app.flywheel.curate import feedback_total
from feilun.data.datasets import iter_rows, resolve_dataset, save_dataset
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.recipe import load_recipe
from feilun.training.runs import check_recipe, create_run, open_run, read_status

_CURATED = {"dpo_lora": "preference_dataset"}  # which curated dataset a recipe trains on


def train(ctx: TurnContext) -> dict[str, Any]:
    """Train the candidate (or finish or reuse this turn's run); its reference and figures."""
    ws, cfg = ctx.workspace, ctx.config
    resources = Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
    overrides = [f"{key}={json.dumps(value)}" for key, value in cfg.train.overrides.items()]
    recipe = load_recipe(Path(cfg.train.recipe), overrides)
    if "dataset" not in ctx.outputs("train"):
        dataset, rows = _training_dataset(ctx, recipe.recipe, recipe.dataset)
        ctx.record("train", dataset=dataset, rows=rows, run_id=ctx.turn.id)
    progress = ctx.outputs("train")
    run_id = str(progress["run_id"])
    if not (resources.runs_root / run_id / "run.json").is_file():
        pins = {"base_model": cfg.base, "dataset": progress["dataset"], "adapter": cfg.name}
        pinned = load_recipe(
            Path(cfg.train.recipe), [*overrides, *(f"{k}={json.dumps(v)}" for k, v in pins.items())]
        )
        check_recipe(resources, pinned)
        create_run(resources.runs_root, pinned, cfg.train.recipe, run_id)
    run = open_run(resources.runs_root, run_id)
    if read_status(run).get("status") != "completed":
        ctx.on_step(f"training run {run_id}")
        execute_run(resources, run)
    manifest = json.loads((run.path / "manifest.json").read_text(encoding="utf-8"))
    metrics = manifest["metrics"]
    tokens = int(metrics.get("tokens", 0))
    return {
        "candidate": manifest["result"],
        "recipe": recipe.recipe,
        "seconds": round(float(metrics.get("wall_time_s", 0.0)), 2),
        "tokens": tokens,
        "cost": round(tokens * cfg.train.price_per_million_tokens / 1e6, 6),
        "train_loss": metrics.get("train_loss"),
        "val_loss": metrics.get("val_loss"),
        "feedback_total": feedback_total(ctx),
    }


def _training_dataset(ctx: TurnContext, recipe: str, default: str) -> tuple[str, int]:
    """The pinned dataset to train on, made by merging when there are several; its rows."""
    ws = ctx.workspace
    curated = ctx.outputs("curate").get(_CURATED.get(recipe, "sft_dataset"))
    refs = [*(ctx.config.train.datasets or [default]), *([curated] if curated else [])]
    datasets = [resolve_dataset(ws.catalog, ref) for ref in refs]
    if len(datasets) == 1:
        return datasets[0].ref, datasets[0].count
    rows = [row for d in datasets for row in iter_rows(ws.artifacts, d.artifact)]
    merged = save_dataset(
        ws.catalog, ws.artifacts, f"{ctx.config.name}-train", rows, inputs=[d.id for d in datasets]
    )
    return merged.ref, len(rows)
