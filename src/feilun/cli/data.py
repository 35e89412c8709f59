"""`feilun data …`: ingest files, clean them into versioned datasets, inspect and export."""

from __future__ import annotations

import typer

from feilun.cli import datasets, ingest, synth

app = typer.Typer(help="Ingest documents and build versioned datasets.", no_args_is_help=True)
app.command("clean")(datasets.clean)
app.command("list")(datasets.list_datasets)
app.command("show")(datasets.show)
app.command("diff")(datasets.diff)
app.command("export")(datasets.export)
app.command("ingest")(ingest.ingest)
app.command("quarantine")(ingest.quarantine)
app.command("synth-qa")(synth.synth_qa)
