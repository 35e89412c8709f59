"""Execute a run: its recipe from the newest checkpoint to the end, then the report card.

Resuming is executing again; the status is written whatever happens.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from feilun.core.errors import ConfigError, FeilunError
from feilun.core.records import utc_now
from feilun.training import report
from feilun.training.context import ProgressFn, Resources, RunContext, RunResult
from feilun.training.distributed import join_world, leave_world
from feilun.training.recipe import Recipe
from feilun.training.recipes import lookup_recipe
from feilun.training.runs import Run, mark_running, read_status, run_recipe, write_status

logger = logging.getLogger(__name__)


def execute_run(
    resources: Resources, run: Run, progress: ProgressFn | None = None
) -> dict[str, Any] | None:
    """Train `run` from its newest checkpoint to the end; its manifest.

    Under torchrun every process calls this; only the first writes status and report and
    returns the manifest (the others return None).
    """
    recipe = run_recipe(run)
    status = read_status(run)
    if status.get("status") == "completed":
        raise ConfigError(
            f"run {run.id} is already completed ({status.get('result')})",
            "start a new run with `feilun train run RECIPE`",
        )
    world = join_world()
    module = lookup_recipe(recipe.recipe)
    if world.is_main:
        mark_running(run, world_size=world.size, started_at=utc_now().isoformat())
    started = time.perf_counter()
    try:
        result: RunResult = module.train(RunContext(recipe, resources, run, world, progress))
    except BaseException as e:
        if world.is_main:
            message = e.message if isinstance(e, FeilunError) else f"{type(e).__name__}: {e}"
            write_status(run, status="failed", error=message, pid=0)
        raise
    finally:
        leave_world(world)
    if not world.is_main:
        return None
    manifest = _manifest(run, recipe, result, time.perf_counter() - started)
    report.write_report(run, manifest)
    last = result.metrics
    write_status(
        run,
        status="completed",
        result=result.result,
        step=last.get("steps"),
        loss=last.get("train_loss"),
        val_loss=last.get("val_loss"),
        tokens_per_s=last.get("tokens_per_s"),
        pid=0,
        finished_at=utc_now().isoformat(),
    )
    return manifest


def _manifest(run: Run, recipe: Recipe, result: RunResult, session_s: float) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "folder": str(run.path),
        "status": "completed",
        "result": result.result,
        "recipe": recipe.model_dump(mode="json"),
        "recipe_hash": recipe.recipe_hash,
        "git_sha": report.git_sha(),
        "packages": report.package_versions(),
        "hardware": report.hardware(),
        "inputs": {
            "base_model": result.base.ref,
            "base_model_id": result.base.id,
            "base_model_sha256": result.base.sha256,
            "dataset": result.dataset.ref,
            "dataset_id": result.dataset.id,
            "dataset_artifact": result.dataset.artifact,
        },
        "data": result.data,
        "metrics": {
            **result.metrics,
            "peak_memory_mb": report.peak_memory_mb(),
            "last_session_s": round(session_s, 2),
        },
        "finished_at": utc_now().isoformat(),
    }
