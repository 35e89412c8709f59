"""Continued pretraining on raw domain text with LoRA (or `method: full`): the whole recipe.

    feilun train run recipes/train/tiny_cpt_lora.yaml

setup (base model, text rows → one token stream cut into max_seq_len blocks, every token a
target; memory pre-flight) → loop (each process takes its share of the step's blocks; loss
divided by the step's token count over all processes) → checkpoints (atomic; resume continues
bit for bit) → artifact (adapter registered with lineage and the base's chat template).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from feilun.training import memory
from feilun.training.base import load_base_model
from feilun.training.checkpointing import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from feilun.training.collate import collate, require_examples, split_validation, tokenize_text_rows
from feilun.training.context import RunContext, RunResult, StepReport
from feilun.training.datasets import iter_rows, resolve_dataset
from feilun.training.distributed import barrier, sum_gradients, sum_over
from feilun.training.lora import apply_method, check_method, save_trained, trainable_parameters
from feilun.training.loss import mean_loss, token_loss_sum
from feilun.training.publish import publish_result
from feilun.training.runs import append_metrics, cut_metrics
from feilun.training.schedule import lr_schedule, plan_steps, shard, step_examples

logger = logging.getLogger(__name__)


def train(ctx: RunContext) -> RunResult:
    """Run the recipe in `ctx` from its newest checkpoint (or the start) to a registered adapter."""
    recipe, cfg, world, run = ctx.recipe, ctx.recipe.train, ctx.world, ctx.run
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # -- setup: base model, text as token blocks -------------------------------------------
    check_method(recipe)
    base, model, tokenizer = load_base_model(ctx.resources.models, recipe.base_model)
    # no template is needed to train on text; the adapter keeps the base's for serving
    template = recipe.data.chat_template or base.chat_template or tokenizer.chat_template or ""
    dataset = resolve_dataset(ctx.resources.catalog, recipe.dataset)
    rows = iter_rows(ctx.resources.artifacts, dataset)
    examples, stats = tokenize_text_rows(rows, tokenizer, recipe.data.max_seq_len)
    train_set, val_set = split_validation(examples, recipe.data.val_fraction, cfg.seed)
    require_examples(train_set, stats, dataset.ref)
    plan = plan_steps(len(train_set), cfg)
    lora_size = memory.lora_parameter_count(model, recipe.lora.targets, recipe.lora.rank)
    is_full = recipe.method == "full"
    shape = memory.shape_of(
        model,
        trainable=sum(p.numel() for p in model.parameters()) if is_full else lora_size,
        micro_batch_size=cfg.micro_batch_size,
        seq_len=recipe.data.max_seq_len,
        is_full=is_full,
    )
    budget = recipe.memory_budget_mb * memory.MiB or memory.available_bytes()
    estimate = memory.check_memory(shape, budget, lora_size)

    model = apply_method(model, recipe).to(world.device)
    params = list(trainable_parameters(model).values())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lr_schedule(optimizer, cfg, plan.total_steps)
    pad_id = tokenizer.pad_token_id

    def validate() -> float | None:
        if not val_set:
            return None
        return mean_loss(model, val_set, cfg.micro_batch_size, pad_id, world.device)

    # -- resume: weights, optimizer, schedule, RNG and data position of the newest checkpoint
    position: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "tokens": 0}
    checkpoint = latest_checkpoint(run.checkpoints)
    if checkpoint is not None:
        position = load_checkpoint(checkpoint, model, optimizer, scheduler)
        logger.info("resuming %s from %s", run.id, checkpoint.name)
    else:
        position["val_loss_before"] = validate()
    start = int(position["step"])
    if world.is_main:
        cut_metrics(run, start)
        if start == 0:
            append_metrics(run, {"step": 0, "val_loss": position["val_loss_before"]})

    # -- loop ------------------------------------------------------------------------------
    elapsed, tokens_seen = float(position["elapsed_s"]), int(position["tokens"])
    session_start, session_tokens, loss = time.perf_counter(), 0, float("nan")
    for step in range(start, plan.total_steps):
        began = time.perf_counter()
        mine = shard(step_examples(step, plan, cfg.seed), world.rank, world.size)
        targets = sum_over(world, sum(train_set[i].target_count for i in mine))
        loss_part = 0.0
        for at in range(0, len(mine), cfg.micro_batch_size):
            batch = collate([train_set[i] for i in mine[at : at + cfg.micro_batch_size]], pad_id)
            batch = {k: v.to(world.device) for k, v in batch.items()}
            step_loss = token_loss_sum(model, batch) / targets
            # torch leaves Tensor.backward unannotated
            step_loss.backward()  # type: ignore[no-untyped-call]
            loss_part += float(step_loss.detach())
        sum_gradients(world, params)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        loss = sum_over(world, loss_part)
        tokens = int(sum_over(world, sum(len(train_set[i].input_ids) for i in mine)))
        took = time.perf_counter() - began
        elapsed, tokens_seen, session_tokens = (
            elapsed + took,
            tokens_seen + tokens,
            session_tokens + tokens,
        )
        done = step + 1
        record: dict[str, Any] = {
            "step": done,
            "epoch": step // plan.steps_per_epoch,
            "loss": loss,
            "lr": scheduler.get_last_lr()[0],
            "tokens": tokens,
            "tokens_per_s": tokens / took,
        }
        if cfg.eval_every and done % cfg.eval_every == 0 and done < plan.total_steps:
            record["val_loss"] = validate()
        if world.is_main:
            append_metrics(run, record)
        speed = session_tokens / (time.perf_counter() - session_start)
        ctx.report(StepReport(done, plan.total_steps, loss, speed))

        # -- checkpoint ----------------------------------------------------------------------
        every = recipe.checkpoint.every_steps
        if every and done % every == 0 and done < plan.total_steps:
            if world.is_main:
                state = {**position, "elapsed_s": elapsed, "tokens": tokens_seen}
                save_checkpoint(
                    run.checkpoints,
                    done,
                    model,
                    optimizer,
                    scheduler,
                    state,
                    recipe.checkpoint.keep,
                )
            barrier(world)

    # -- artifact: the adapter, registered with its lineage -----------------------------
    val_after = validate()
    metrics: dict[str, Any] = {
        "steps": plan.total_steps,
        "train_loss": loss,
        "val_loss_before": position["val_loss_before"],
        "val_loss": val_after,
        "tokens": tokens_seen,
        "tokens_per_s": tokens_seen / elapsed if elapsed else 0.0,
        "wall_time_s": elapsed,
        "memory_estimate_mb": estimate / memory.MiB,
        "world_size": world.size,
    }
    result = ""
    if world.is_main:
        append_metrics(run, {"step": plan.total_steps, "val_loss": val_after})
        folder = save_trained(model, tokenizer, template, run.output)
        result = publish_result(
            ctx.resources.artifacts,
            ctx.resources.models,
            run_id=run.id,
            recipe=recipe,
            base=base,
            dataset=dataset,
            folder=folder,
            template=template,
            metrics={k: float(v) for k, v in metrics.items() if v is not None},
        )
    return RunResult(
        result,
        base,
        dataset,
        {
            **stats.to_json(),
            "train": len(train_set),
            "validation": len(val_set),
            "steps_per_epoch": plan.steps_per_epoch,
        },
        metrics,
    )
