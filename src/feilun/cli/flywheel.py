"""`feilun flywheel turn|resume|rollback|status|list|report`: the data flywheel's turns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

if TYPE_CHECKING:
    from feilun.app.flywheel import TurnResult

app = typer.Typer(
    help="Turns of the data flywheel: curate, train, evaluate, gate, promote; resume, roll back.",
    no_args_is_help=True,
)

Name = Annotated[
    str | None,
    typer.Option("--name", help="Flywheel name (the config's `name`; default: the newest turn)."),
]


def _step_printer(quiet: bool) -> Any:
    def step(message: str) -> None:
        if not quiet:
            typer.secho(f"• {message}", err=True, fg=typer.colors.CYAN)

    return step


def _finish(result: TurnResult, json: bool) -> None:
    if json:
        print_json(dataclasses.asdict(result))
    else:
        typer.echo(f"turn {result.name} #{result.number}: {result.status}")
        typer.echo(f"  candidate {result.candidate or '-'}; incumbent {result.incumbent or '-'}")
        for check in (result.gate or {}).get("checks", []):
            typer.echo(f"  {'ok  ' if check['passed'] else 'FAIL'} {check['detail']}")
        if result.reason:
            typer.echo(f"  reason: {result.reason}")
        if result.report_path:
            typer.echo(f"report: {result.report_path}")
    if result.status == "failed":
        raise typer.Exit(1)


@app.command("turn")
def turn(
    config: Annotated[
        Path, typer.Option("--config", help="Turn config, e.g. recipes/flywheel/tiny.yaml.")
    ],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Run one turn: curate, train, evaluate against the incumbent, gate, promote or reject."""
    from feilun.app.flywheel import run_turn
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        result = run_turn(ws, config, on_step=_step_printer(json))
    _finish(result, json)


@app.command("resume")
def resume(
    name: Name = None, workspace: options.Workspace = None, json: options.Json = False
) -> None:
    """Continue an interrupted or failed turn at its first unfinished step."""
    from feilun.app.flywheel import resume_turn
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        result = resume_turn(ws, name, on_step=_step_printer(json))
    _finish(result, json)


@app.command("rollback")
def rollback(
    alias: Annotated[str, typer.Option("--alias", help="The alias to restore, e.g. prod.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Point the alias back at what the newest promotion replaced (or stop its canary)."""
    from feilun.app.flywheel import rollback as restore
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        moved = restore(ws, alias)
    if json:
        print_json(moved)
    else:
        typer.echo(f"{moved['alias']}: {moved['from']} -> {moved['to']}")


@app.command("list")
def list_turns(
    name: Name = None, workspace: options.Workspace = None, json: options.Json = False
) -> None:
    """Every turn (of one flywheel), oldest first."""
    from feilun.app.flywheel.report import turn_summary
    from feilun.app.flywheel.turns import list_turns as find
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        turns = [(t.name, turn_summary(t), t.step) for t in find(ws.database, name)]
    if json:
        print_json([{"name": n, **s, "step": step} for n, s, step in turns])
        return
    rows = [
        (n, s["number"], s["status"], step, s["candidate"] or "", s["incumbent"] or "")
        for n, s, step in turns
    ]
    print_table(
        "flywheel turns", ["name", "turn", "status", "step", "candidate", "incumbent"], rows
    )


@app.command("status")
def status(
    name: Name = None, workspace: options.Workspace = None, json: options.Json = False
) -> None:
    """The newest turn (of one flywheel): status, step, outputs of each finished step."""
    from feilun.app.flywheel.turns import latest_turn
    from feilun.app.workspace import opened
    from feilun.core.errors import NotFound

    with opened(workspace) as ws:
        found = latest_turn(ws.database, name)
    if found is None:
        raise NotFound(
            "no flywheel turns yet", "start one with `feilun flywheel turn --config FILE`"
        )
    shown = {k: v for k, v in dataclasses.asdict(found).items() if k != "config"}
    if found.status == "running" and not found.is_alive:
        shown["status"] = "interrupted"
    if json:
        print_json(shown)
        return
    typer.echo(f"turn {found.name} #{found.number}: {shown['status']} (step {found.step})")
    if found.error:
        typer.echo(f"  error: {found.error}")
    for step, outputs in found.state.items():
        if isinstance(outputs, dict) and step != "owner":
            done = "done" if outputs.get("done") else "unfinished"
            typer.echo(f"  {step}: {done}")


@app.command("report")
def report(
    name: Annotated[str, typer.Option("--name", help="Flywheel name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and report.json.")],
    workspace: options.Workspace = None,
) -> None:
    """Write the report across every turn of a flywheel (HTML with charts, and JSON)."""
    from feilun.app.flywheel import write_report
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        path = write_report(ws, name, out)
    typer.echo(f"report: {path}")
