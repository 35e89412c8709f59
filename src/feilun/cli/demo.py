"""`feilun demo`: the whole flywheel on the embedded default (SQLite, local files, CPU)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table


def demo(
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Folder of your documents (default: the packaged handbook).", show_default=False
        ),
    ] = None,
    qa: Annotated[
        Path | None,
        typer.Option(
            help="Your question set, JSONL: id, question, answer[, lang, doc, evidence, split].",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Turn config template (default: recipes/flywheel/demo.yaml).", show_default=False
        ),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Ingest, clean, index, synthesize, train, evaluate, gate, serve, collect feedback, retrain."""
    busy = _one_thread_when_busy()  # before anything imports torch
    from feilun.app.demo import run_demo

    if busy:
        typer.echo(busy, err=True)

    def step(message: str) -> None:
        typer.secho(message, err=True, fg=typer.colors.CYAN if message.startswith("[") else None)

    result = run_demo(workspace, on_step=step, corpus=corpus, qa=qa, config=config)
    if json:
        print_json(_summary(result.to_json()))
        return
    rows = [(s.step, f"{s.seconds:.1f}", _reused(s.reused, s.first_seconds)) for s in result.steps]
    print_table(f"demo {result.name} ({result.seconds:.0f} s)", ["step", "seconds", ""], rows)
    for turn in result.turns:
        typer.echo(f"turn {turn['turn']}: {turn['status']} ({turn['candidate']})")
    typer.echo(f"summary: {result.summary_path}")
    typer.echo(f"report: {result.report_path}")


def _reused(reused: bool, first_seconds: float | None) -> str:
    if not reused:
        return ""
    return "reused" if first_seconds is None else f"reused (took {first_seconds} s then)"


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable end of `--json`: per turn, per step, where the reports are."""
    return {
        "workspace": result["workspace"],
        "name": result["name"],
        "seconds": result["seconds"],
        "steps": {
            s["step"]: {k: s[k] for k in ("seconds", "reused", "first_seconds")}
            for s in result["steps"]
        },
        "turns": result["turns"],
        "feedback": result["feedback"],
        "rag": result["rag"],
        "report_path": result["report_path"],
        "summary_path": result["summary_path"],
    }


def _one_thread_when_busy() -> str | None:
    """One torch thread when more processes want the CPU than it has cores (unless set).

    Measured on the shared 2-core CPU at a load of ~9: a 576-wide matmul ran 10x slower with
    two torch threads than with one, as OpenMP threads wait on each other.
    """
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load < cores or "OMP_NUM_THREADS" in os.environ:
        return None
    os.environ["OMP_NUM_THREADS"] = "1"
    return f"busy machine (load {load:.1f} on {cores} cores): torch runs one thread"
