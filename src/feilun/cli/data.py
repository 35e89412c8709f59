"""`feilun data …`: ingest files, clean them into versioned datasets, inspect and export."""

from __future__ import annotations

import typer

app = typer.Typer(help="Ingest documents and build versioned datasets.", no_args_is_help=True)
