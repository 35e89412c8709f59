"""Direct preference optimisation with LoRA on `prompt`/`chosen`/`rejected` rows: the whole recipe.

    feilun train run recipes/train/tiny_dpo_lora.yaml

setup (base model, chat template, each row → a chosen and a rejected sequence labelled on the
answer; the reference scores come from the base with the adapter off, computed once) → loop
(loss −log σ(β·((chosen − ref) − (rejected − ref))) summed over the step's pairs and divided by
their count over all processes) → checkpoints (atomic; resume continues bit for bit) →
artifact (adapter registered with lineage).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)

from feilun.core.errors import ConfigError
from feilun.training import memory
from feilun.training.base import chat_template_of, load_base_model
from feilun.training.checkpointing import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from feilun.training.collate import (
    Tokens,
    collate,
    require_examples,
    split_validation,
    tokenize_preference_rows,
)
from feilun.training.context import RunContext, RunResult, StepReport
from feilun.training.datasets import iter_rows, resolve_dataset
from feilun.training.distributed import barrier, sum_gradients, sum_over
from feilun.training.lora import apply_method, check_method, save_trained, trainable_parameters
from feilun.training.loss import sequence_logprobs
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

    # -- setup: base model, chat template, preference pairs -------------------------------
    check_method(recipe)
    if recipe.method != "lora":
        raise ConfigError(
            f"dpo_lora trains adapters only, got method={recipe.method}",
            "set method=lora: the reference model is the base with the adapter switched off",
        )
    base, model, tokenizer = load_base_model(ctx.resources.models, recipe.base_model)
    template = chat_template_of(recipe, base, tokenizer)
    dataset = resolve_dataset(ctx.resources.catalog, recipe.dataset)
    rows = iter_rows(ctx.resources.artifacts, dataset)
    pairs, stats = tokenize_preference_rows(
        rows, tokenizer, template, recipe.data.max_seq_len, recipe.data.overlong
    )
    train_set, val_set = split_validation(pairs, recipe.data.val_fraction, cfg.seed)
    require_examples(train_set, stats, dataset.ref)
    plan = plan_steps(len(train_set), cfg)
    lora_size = memory.lora_parameter_count(model, recipe.lora.targets, recipe.lora.rank)
    shape = memory.shape_of(
        model,
        trainable=lora_size,
        micro_batch_size=2 * cfg.micro_batch_size,  # a chosen and a rejected row per pair
        seq_len=recipe.data.max_seq_len,
        is_full=False,
    )
    budget = recipe.memory_budget_mb * memory.MiB or memory.available_bytes()
    estimate = memory.check_memory(shape, budget, lora_size)

    model = apply_method(model, recipe).to(world.device)
    params = list(trainable_parameters(model).values())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lr_schedule(optimizer, cfg, plan.total_steps)
    pad_id = tokenizer.pad_token_id
    beta = recipe.dpo.beta

    def scores(batch_pairs: list[tuple[Tokens, Tokens]]) -> torch.Tensor:
        """Summed answer log-probs, (2, P): row 0 chosen, row 1 rejected."""
        rows = [c for c, _ in batch_pairs] + [r for _, r in batch_pairs]
        batch = {k: v.to(world.device) for k, v in collate(rows, pad_id).items()}
        return sequence_logprobs(model, batch).view(2, len(batch_pairs))  # (2, P)

    def reference(split: list[tuple[Tokens, Tokens]]) -> torch.Tensor:
        """The base model's scores of every pair, (2, N): the adapter off, no gradients."""
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            parts = [
                scores(split[at : at + cfg.micro_batch_size])
                for at in range(0, len(split), cfg.micro_batch_size)
            ]
        model.train()
        return torch.cat(parts, dim=1) if parts else torch.zeros(2, 0)

    def dpo_losses(policy: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pair loss and reward margin, each (P,)."""
        margin = beta * ((policy[0] - ref[0]) - (policy[1] - ref[1]))  # (P,)
        return -F.logsigmoid(margin), margin

    train_ref, val_ref = reference(train_set), reference(val_set)

    def validate() -> float | None:
        if not val_set:
            return None
        model.eval()
        with torch.no_grad():
            policy = torch.cat(
                [
                    scores(val_set[at : at + cfg.micro_batch_size])
                    for at in range(0, len(val_set), cfg.micro_batch_size)
                ],
                dim=1,
            )
        model.train()
        return float(dpo_losses(policy, val_ref)[0].mean())

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
        count = sum_over(world, len(mine))
        loss_part, wins = 0.0, 0
        for at in range(0, len(mine), cfg.micro_batch_size):
            chunk = mine[at : at + cfg.micro_batch_size]
            losses, margin = dpo_losses(
                scores([train_set[i] for i in chunk]), train_ref[:, chunk].to(world.device)
            )
            step_loss = losses.sum() / count
            # torch leaves Tensor.backward unannotated
            step_loss.backward()  # type: ignore[no-untyped-call]
            loss_part += float(step_loss.detach())
            wins += int((margin > 0).sum())
        sum_gradients(world, params)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        loss = sum_over(world, loss_part)
        tokens = int(
            sum_over(
                world,
                sum(len(c.input_ids) + len(r.input_ids) for c, r in (train_set[i] for i in mine)),
            )
        )
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
            "reward_accuracy": sum_over(world, wins) / count,
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
