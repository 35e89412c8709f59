"""Run folders: `runs/<id>/` holds the recipe, status, metrics, checkpoints, result and report.

`run.json` (status) and every report file are replaced atomically; `metrics.jsonl` is appended
one line per step and cut back to the checkpoint on resume, so it always reads as one curve.
A run whose status says running but whose process is gone is shown as interrupted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feilun.core.errors import ConfigError, NotFound
from feilun.core.files import write_atomically
from feilun.core.processes import is_running, this_process
from feilun.core.records import new_id, utc_now
from feilun.training.datasets import resolve_dataset
from feilun.training.recipe import Recipe, load_recipe, validate_recipe
from feilun.training.recipes import check_recipe_name

if TYPE_CHECKING:
    from feilun.training.context import Resources

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Run:
    """One training run's folder."""

    id: str
    path: Path

    @property
    def checkpoints(self) -> Path:
        """Where checkpoints go."""
        return self.path / "checkpoints"

    @property
    def output(self) -> Path:
        """The trained adapter (or full model) folder."""
        return self.path / "adapter"

    @property
    def metrics(self) -> Path:
        """One JSON line per optimizer step (and per validation)."""
        return self.path / "metrics.jsonl"


def write_json(path: Path, value: Any) -> None:
    """Replace `path` with `value` as JSON, atomically (temporary file, fsync, rename)."""
    write_atomically(path, json.dumps(value, ensure_ascii=False, indent=2, default=str))


def create_run(root: Path, recipe: Recipe, source: str, run_id: str | None = None) -> Run:
    """A new run folder holding the resolved recipe; refuses an id that exists."""
    run_id = run_id or new_id("run")
    if not _RUN_ID.match(run_id):
        raise ConfigError(
            f"run id {run_id!r} is not allowed",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    path = root / run_id
    try:
        path.mkdir(parents=True)
    except FileExistsError as e:
        raise ConfigError(
            f"run {run_id!r} exists already",
            f"continue it with `feilun train resume {run_id}`, or pick another --run-id",
        ) from e
    run = Run(run_id, path)
    write_json(path / "recipe.json", recipe.model_dump(mode="json"))
    write_status(
        run, status="created", recipe=recipe.recipe, source=source, created_at=utc_now().isoformat()
    )
    return run


def check_recipe(resources: Resources, recipe: Recipe) -> None:
    """Fail now, with the candidates, on an unknown recipe, base model or dataset."""
    check_recipe_name(recipe.recipe)
    resources.models.get(recipe.base_model)
    resolve_dataset(resources.catalog, recipe.dataset)


def start_run(
    resources: Resources,
    recipe_path: Path,
    overrides: list[str],
    run_id: str | None = None,
) -> Run:
    """Validate the recipe (with overrides) and create its run folder."""
    recipe = load_recipe(recipe_path, overrides)
    check_recipe(resources, recipe)
    return create_run(resources.runs_root, recipe, str(recipe_path), run_id)


def open_run(root: Path, run_id: str) -> Run:
    """An existing run; NotFound lists the newest ones."""
    path = root / run_id
    if not _RUN_ID.match(run_id) or not (path / "run.json").is_file():
        recent = [r["id"] for r in list_runs(root)[:5]]
        raise NotFound(
            f"no run {run_id!r} in {root}; newest runs: {', '.join(recent) or 'none'}",
            "see `feilun train list`",
        )
    return Run(run_id, path)


def run_recipe(run: Run) -> Recipe:
    """The resolved recipe the run was started with."""
    raw = json.loads((run.path / "recipe.json").read_text(encoding="utf-8"))
    return validate_recipe(raw, str(run.path / "recipe.json"))


def write_status(run: Run, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into run.json (atomically) and return the new status."""
    status = _read_json(run.path / "run.json")
    status.update(fields, id=run.id, updated_at=utc_now().isoformat())
    write_json(run.path / "run.json", status)
    return status


def mark_running(run: Run, **fields: Any) -> dict[str, Any]:
    """Status running, owned by this process (so a dead owner reads as interrupted)."""
    return write_status(run, status="running", **this_process(), **fields)


def read_status(run: Run) -> dict[str, Any]:
    """run.json, with `running` turned into `interrupted` when its process is gone."""
    status = _read_json(run.path / "run.json")
    if status.get("status") == "running" and not is_running(status):
        status["status"] = "interrupted"
    return status


def append_metrics(run: Run, record: dict[str, Any]) -> None:
    """Append one metrics line (flushed, so a kill loses at most the line being written)."""
    with run.metrics.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()


def read_metrics(run: Run) -> list[dict[str, Any]]:
    """Every complete metrics line."""
    if not run.metrics.is_file():
        return []
    out = []
    for line in run.metrics.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the line a kill cut short
            continue
    return out


def cut_metrics(run: Run, after_step: int) -> None:
    """Drop metrics lines past `after_step` (they are re-run after a resume)."""
    kept = [m for m in read_metrics(run) if m.get("step", 0) <= after_step]
    write_atomically(run.metrics, "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in kept))


def show_run(root: Path, run_id: str) -> dict[str, Any]:
    """Status, step, losses, speed and result of a run (running, interrupted or done)."""
    run = open_run(root, run_id)
    status = read_status(run)
    metrics = read_metrics(run)
    steps = [m for m in metrics if "loss" in m]
    vals = [m for m in metrics if "val_loss" in m]
    recipe = run_recipe(run)
    return {
        **status,
        "path": str(run.path),
        "recipe": recipe.model_dump(mode="json"),
        "step": steps[-1]["step"] if steps else 0,
        "losses": [round(m["loss"], 4) for m in steps],
        "val_losses": {m["step"]: m["val_loss"] for m in vals},
        "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None,
        "checkpoints": sorted(p.name for p in run.checkpoints.glob("step-*")),
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """The status of every run, newest first."""
    if not root.is_dir():
        return []
    runs = [Run(p.name, p) for p in root.iterdir() if (p / "run.json").is_file()]
    statuses = [read_status(r) for r in runs]
    return sorted(statuses, key=lambda s: str(s.get("created_at", "")), reverse=True)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}
    return True
