"""`feilun demo`: the main job on the embedded default (SQLite, local files, CPU)."""

from __future__ import annotations

import dataclasses

import typer

from feilun.cli import options
from feilun.cli.output import print_json


def demo(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Set up a workspace and answer a check question with the packaged model."""
    from feilun.app.demo import run_demo

    def step(message: str) -> None:
        if not json:
            typer.secho(f"• {message}", err=True, fg=typer.colors.CYAN)

    result = run_demo(workspace, on_step=step)
    if json:
        print_json(dataclasses.asdict(result))
    else:
        typer.echo(f"Q: {result.question}\nA: {result.answer}")
        mark = "correct" if result.is_correct else "WRONG"
        typer.echo(f"({mark}; {result.model}; workspace {result.workspace}; {result.seconds} s)")
    if not result.is_correct:
        raise typer.Exit(1)
