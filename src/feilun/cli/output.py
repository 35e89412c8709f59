"""Printing for people (Rich tables, to stdout) and machines (`--json`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table on stdout; cells are shown as written (`[手机号]` is not Rich markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    Console().print(table)


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs (silent when stderr is not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(message):
        yield
