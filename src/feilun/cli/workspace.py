"""`feilun init` and `feilun doctor`."""

from __future__ import annotations

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table, spinner


def init(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Create a workspace: feilun.toml, metadata DB, artifact store, packaged models."""
    from feilun.app.workspace import init_workspace

    with spinner("initialising the workspace…"):
        ws, created = init_workspace(workspace)
    models = [m.ref for m in ws.models.list_models()]
    ws.close()
    if json:
        print_json({"workspace": str(ws.path.resolve()), "created": created, "models": models})
        return
    verb = "created" if created else "already exists:"
    typer.echo(f"workspace {verb} {ws.path.resolve()}")
    typer.echo(f"models: {', '.join(models) or 'none'}")


def doctor(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Check the workspace, database revision (migrating after a backup) and packaged models."""
    from feilun.app.doctor import run_doctor

    with spinner("checking…"):
        checks = run_doctor(workspace)
    if json:
        print_json([check.__dict__ for check in checks])
    else:
        rows = [(("ok" if c.is_ok else "FAIL"), c.name, c.detail, c.fix) for c in checks]
        print_table("feilun doctor", ["", "check", "detail", "fix"], rows)
    if not all(check.is_ok for check in checks):
        raise typer.Exit(1)
