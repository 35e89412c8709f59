"""The `feilun` command: `feilun <noun> <verb>`; heavy imports happen inside commands.

A `FeilunError` prints one line (what failed and the fix) and exits 1; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from feilun import __version__
from feilun.cli import (
    accounts,
    ask,
    audit,
    chat,
    data,
    demo,
    eval,
    feedback,
    flywheel,
    governance,
    kb,
    label,
    models,
    recipes,
    safety,
    serve,
    train,
    watermark,
    workspace,
)
from feilun.core.errors import FeilunError

app = typer.Typer(
    name="feilun",
    help="Feilun (飞轮): your documents and an open LLM, made into a served, improving assistant.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("init")(workspace.init)
app.command("doctor")(workspace.doctor)
app.command("chat")(chat.chat)
app.command("ask")(ask.ask)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.add_typer(kb.app, name="kb")
app.add_typer(train.app, name="train")
app.add_typer(eval.app, name="eval")
app.add_typer(feedback.app, name="feedback")
app.add_typer(flywheel.app, name="flywheel")
app.add_typer(recipes.app, name="recipes")
app.add_typer(safety.app, name="safety")
app.add_typer(label.app, name="label")
app.add_typer(watermark.app, name="watermark")
app.add_typer(audit.app, name="audit")
app.add_typer(governance.app, name="governance")
app.add_typer(accounts.tenants_app, name="tenants")
app.add_typer(accounts.keys_app, name="keys")
app.add_typer(accounts.quotas_app, name="quotas")
app.add_typer(accounts.prices_app, name="prices")
app.add_typer(accounts.usage_app, name="usage")
app.add_typer(accounts.traces_app, name="traces")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"feilun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Feilun command line."""


def run() -> None:
    """Console entry point."""
    try:
        app()
    except FeilunError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(1)
