"""The evaluate step: incumbent and candidate on the same suite, plus the curated eval set.

The incumbent is what the alias points at (its own target, not a canary), else the base
model. Each report id is recorded as soon as it exists, so a resumed turn does not redo it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feilun.app.answering import kb_access_opener
from feilun.app.flywheel.context import TurnContext
from feilun.data.datasets import iter_rows, resolve_dataset
from feilun.evaluation.suites import EvalContext, Suite, TaskSpec, load_suite, run_suite

FEEDBACK_TASK = "feedback"  # the curated eval set's task name in the suite


def incumbent_ref(ctx: TurnContext) -> str:
    """The pinned reference serving the alias now (the base model if the alias is unset)."""
    models = ctx.workspace.models
    alias = models.alias(ctx.config.alias)
    return models.resolve(alias.target if alias else ctx.config.base).ref


def evaluate(ctx: TurnContext) -> dict[str, Any]:
    """Run the suite against both; their report ids."""
    if "incumbent" not in ctx.outputs("evaluate"):
        ctx.record("evaluate", incumbent=incumbent_ref(ctx))
    suite, base = _suite(ctx)
    models = {"incumbent": ctx.outputs("evaluate")["incumbent"]}
    models["candidate"] = ctx.outputs("train")["candidate"]
    ws = ctx.workspace
    eval_ctx = EvalContext(ws.catalog, ws.artifacts, ws.models, open_rag=kb_access_opener(ws))
    for role, ref in models.items():
        if f"{role}_report" not in ctx.outputs("evaluate"):
            ctx.on_step(f"evaluating the {role} {ref} on {suite.name}")
            report = run_suite(eval_ctx, suite, ref, base=base)
            ctx.record("evaluate", **{f"{role}_report": report.id})
    return {"suite": suite.name, "tasks": [t.name for t in suite.tasks]}


def _suite(ctx: TurnContext) -> tuple[Suite, Path]:
    """The configured suite, with the curated eval set as one more QA task."""
    suite, base = load_suite(Path(ctx.config.evaluate.suite))
    curated = ctx.outputs("curate").get("eval_dataset")
    if not curated:
        return suite, base
    ws = ctx.workspace
    dataset = resolve_dataset(ws.catalog, curated)
    path = ctx.folder / f"{FEEDBACK_TASK}-eval.jsonl"
    if not path.is_file():  # written once: the same file for both models
        lines = [
            json.dumps(row, ensure_ascii=False) for row in iter_rows(ws.artifacts, dataset.artifact)
        ]
        partial = path.with_suffix(".partial")
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
        partial.replace(path)
    task = TaskSpec(name=FEEDBACK_TASK, kind="qa", path=str(path))
    return suite.model_copy(update={"tasks": [*suite.tasks, task]}), base
