"""`feilun train run|resume|show|list`: train adapters from recipes, resume them, inspect runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table
from feilun.core.errors import FeilunError

if TYPE_CHECKING:
    from feilun.app.workspace import Workspace
    from feilun.training.context import ProgressFn, Resources

app = typer.Typer(
    help="Train adapters from recipes; resume and inspect runs.", no_args_is_help=True
)

RunId = Annotated[str, typer.Argument(help="Run id, as `feilun train run` printed it.")]
Nproc = Annotated[
    int, typer.Option("--nproc", min=1, help="Processes (gloo on CPU, NCCL on GPUs).")
]
Engine = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="What starts the processes: torchrun (the default with --nproc > 1) or ray "
        "(Ray Train; RAY_ADDRESS joins a cluster).",
        show_default=False,
    ),
]


def _resources(ws: Workspace) -> Resources:
    from feilun.training.context import Resources

    return Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")


@app.command("run")
def run(
    recipe: Annotated[
        Path, typer.Argument(help="Recipe YAML, e.g. recipes/train/tiny_sft_lora.yaml.")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Recipe overrides, e.g. train.lr=1e-4 lora.rank=16.", show_default=False
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name the run (default: generated).")
    ] = None,
    nproc: Nproc = 1,
    engine: Engine = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Train with a recipe: prints the run id first, then a progress bar and the results."""
    from feilun.app.workspace import opened
    from feilun.training.engines import lookup_engine
    from feilun.training.runs import start_run

    if engine is not None:
        lookup_engine(engine)  # an unknown engine fails before a run folder is made
    with opened(workspace) as ws:
        created = start_run(_resources(ws), recipe, overrides or [], run_id)
        typer.echo(f"run {created.id}", err=json)
        _execute(ws, created.id, nproc, engine, json)


@app.command("resume")
def resume(
    run_id: RunId,
    nproc: Nproc = 1,
    engine: Engine = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Continue a run from its newest checkpoint (after a crash, kill or full disk)."""
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        _execute(ws, run_id, nproc, engine, json)


def _execute(ws: Workspace, run_id: str, nproc: int, engine: str | None, json: bool) -> None:
    from feilun.training.launch import execute_run
    from feilun.training.runs import open_run

    resources = _resources(ws)
    run = open_run(resources.runs_root, run_id)
    manifest: dict[str, Any] | None
    if nproc > 1 or engine is not None:
        manifest = _launch(ws, run_id, nproc, engine or "torchrun")
    else:
        with _progress_bar(quiet=json) as progress:
            manifest = execute_run(resources, run, progress)
        if manifest is not None:  # the process that trained (the first, under an engine)
            _audit_trained(ws, manifest)
    if manifest is None:  # a worker other than the first (under an engine)
        return
    if json:
        print_json(manifest)
        return
    _print_summary(manifest)


def _audit_trained(ws: Workspace, manifest: dict[str, Any]) -> None:
    """Audit the registered result right after the run (the registry saved it on its own)."""
    from feilun.app.audit import record

    details = {"run_id": manifest["run_id"], "recipe_hash": manifest["recipe_hash"]}
    record(ws, "model.trained", str(manifest["result"]), {**details, **manifest["inputs"]})


def _launch(ws: Workspace, run_id: str, nproc: int, engine: str) -> dict[str, Any]:
    """Run `resume` in `nproc` processes started by `engine`; the manifest the first one wrote."""
    import json as jsonlib

    from feilun.training.engines import lookup_engine
    from feilun.training.runs import open_run, read_status

    launcher = lookup_engine(engine)
    argv = ["train", "resume", run_id, "--workspace", str(ws.path.resolve())]
    code = launcher.launch(nproc, argv)
    if code != 0:
        error = read_status(open_run(ws.path / "runs", run_id)).get("error") or "see above"
        raise FeilunError(
            f"{nproc} training processes ({engine}) of run {run_id} failed (exit {code}): {error}",
            f"fix the cause, then `feilun train resume {run_id} --nproc {nproc} --engine {engine}`",
        )
    manifest: dict[str, Any] = jsonlib.loads(
        (ws.path / "runs" / run_id / "manifest.json").read_text(encoding="utf-8")
    )
    return manifest


@app.command("show")
def show(run_id: RunId, workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Status, step, losses, tokens/s and the result of one run."""
    from feilun.app.workspace import opened
    from feilun.training.runs import show_run

    with opened(workspace) as ws:
        shown = show_run(ws.path / "runs", run_id)
    if json:
        print_json(shown)
        return
    losses = shown.pop("losses")
    vals = shown.pop("val_losses")
    recipe = shown.pop("recipe")
    shown["recipe"] = f"{recipe['recipe']} {recipe['base_model']} on {recipe['dataset']}"
    for key in ("id", "status", "recipe", "step", "result", "tokens_per_s", "error", "path"):
        if shown.get(key) not in (None, ""):
            typer.echo(f"{key:>13}: {_fmt(shown[key])}")
    if losses:
        tail = ", ".join(f"{x:.4f}" for x in losses[-8:])
        typer.echo(f"{'loss':>13}: {tail}  ({len(losses)} steps)")
    if vals:
        typer.echo(f"{'val_loss':>13}: " + ", ".join(f"@{s} {_fmt(v)}" for s, v in vals.items()))
    typer.echo(f"{'checkpoints':>13}: {', '.join(shown['checkpoints']) or 'none'}")


@app.command("list")
def list_runs(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Every run, newest first."""
    from feilun.app.workspace import opened
    from feilun.training.runs import list_runs as find

    with opened(workspace) as ws:
        runs = find(ws.path / "runs")
    if json:
        print_json(runs)
        return
    rows = [
        (
            r["id"],
            r.get("recipe", ""),
            r.get("status", ""),
            r.get("step") or "",
            _fmt(r.get("loss")),
            r.get("result") or "",
            str(r.get("created_at", ""))[:19],
        )
        for r in runs
    ]
    print_table("runs", ["id", "recipe", "status", "step", "loss", "result", "created"], rows)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_summary(manifest: dict[str, Any]) -> None:
    m = manifest["metrics"]
    before, after = m.get("val_loss_before"), m.get("val_loss")
    rows = [
        ("result", manifest["result"]),
        ("steps", m["steps"]),
        ("train loss (last step)", _fmt(m["train_loss"])),
        ("validation loss", f"{_fmt(before)} → {_fmt(after)}" if after is not None else "(none)"),
        ("tokens/s", f"{m['tokens_per_s']:.0f}"),
        ("peak memory", f"{m['peak_memory_mb']:.0f} MiB"),
        ("wall time", f"{m['wall_time_s']:.1f} s"),
    ]
    print_table(f"run {manifest['run_id']}", ["", "value"], rows)
    typer.echo(f"report: {Path(manifest['folder']) / 'report.md'}")


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[ProgressFn | None]:
    """A Rich bar on stderr: step, loss, tokens/s and ETA."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from feilun.training.context import StepReport

    columns = (
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[speed]:.0f} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True, file=sys.stderr)) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"), speed=0.0)

        def update(step: StepReport) -> None:
            bar.update(
                task,
                completed=step.step,
                total=step.total_steps,
                loss=step.loss,
                speed=step.tokens_per_s,
            )

        yield update
