"""`feilun data ingest` and `feilun data quarantine`: files in, Documents out, bad files listed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

if TYPE_CHECKING:
    from feilun.data.ingest import IngestReport, Progress, ProgressEvent

_MIB = 1 << 20


def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files and folders to ingest.", show_default=False)
    ],
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="Collection the Documents go into.")
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Also ingest files in sub-folders.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with 1 when any file was quarantined.")
    ] = False,
    password: Annotated[
        str | None, typer.Option(help="Password that opens encrypted PDFs.", show_default=False)
    ] = None,
    text_field: Annotated[
        str | None,
        typer.Option(help="CSV column / JSONL field holding the text (default: guessed)."),
    ] = None,
    max_file_mb: Annotated[
        float, typer.Option(min=0.001, help="Larger files are quarantined unread.")
    ] = 100,
    max_seconds: Annotated[
        float, typer.Option(min=0.01, help="Time one file may take to parse.")
    ] = 60,
    max_memory_mb: Annotated[
        int, typer.Option(min=64, help="Memory one file's parser process may use.")
    ] = 2048,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Extract the text of files (PDF, DOCX, HTML, Markdown, text, CSV, JSONL, ZIP of these)."""
    from feilun.app.audit import record
    from feilun.app.workspace import opened
    from feilun.data.ingest import IngestLimits
    from feilun.data.ingest import ingest as ingest_files
    from feilun.data.parsing import ParseOptions
    from feilun.data.sandbox import SandboxLimits

    limits = IngestLimits(
        max_file_bytes=int(max_file_mb * _MIB),
        sandbox=SandboxLimits(timeout_s=max_seconds, memory_bytes=max_memory_mb * _MIB),
    )
    with opened(workspace) as ws, _progress_bar(is_shown=not json) as progress:
        report = ingest_files(
            paths,
            collection,
            catalog=ws.catalog,
            artifacts=ws.artifacts,
            recursive=recursive,
            options=ParseOptions(password=password, text_field=text_field),
            limits=limits,
            progress=progress,
        )
        # Each file is its own catalog transaction; the batch is audited right after.
        ingested = [f.record for f in report.files if f.status == "ingested"]
        details = {"counts": report.counts, "documents": ingested[:100]}
        record(ws, "data.ingested", collection, details)
    if json:
        print_json({"counts": report.counts, **dataclasses.asdict(report)})
    else:
        _print_summary(report)
    if strict and report.counts["quarantined"]:
        raise typer.Exit(1)


def quarantine(
    collection: Annotated[
        str | None,
        typer.Option("--collection", "-c", help="Only this collection.", show_default=False),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """List the files that could not be ingested, with the reason and the fix."""
    from feilun.app.workspace import opened
    from feilun.data.collections import list_quarantine

    with opened(workspace) as ws:
        records = list_quarantine(ws.catalog, collection)
    if json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    rows = [(r.name, r.file_type or "?", r.reason, r.fix) for r in records]
    print_table("quarantined files", ["name", "type", "reason", "fix"], rows)


@contextmanager
def _progress_bar(is_shown: bool) -> Iterator[Progress | None]:
    """A Rich bar over the batch on stderr, its description the current file and stage.

    It appears with the first file, so an error before (a wrong path) prints only the error.
    """
    if not is_shown:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress("{task.description}", *columns, console=Console(stderr=True))
    task = bar.add_task("", total=None)

    def update(event: ProgressEvent) -> None:
        if not bar.live.is_started:
            bar.start()
        description = f"{event.stage:<7} {event.path}"
        bar.update(task, completed=event.done, total=event.total, description=description)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.update(task, completed=bar.tasks[0].total or 0, description="done")
            bar.stop()


def _print_summary(report: IngestReport) -> None:
    counts = report.counts
    rows = [
        ("ingested", counts["ingested"]),
        ("skipped (unchanged)", counts["skipped"]),
        ("quarantined", counts["quarantined"]),
    ]
    print_table(f"ingest into {report.collection} ({report.seconds:.1f} s)", ["", "files"], rows)
    bad = [(f.path, f.reason, f.fix) for f in report.files if f.status == "quarantined"]
    if bad:
        print_table("quarantined", ["file", "reason", "fix"], bad)
    for note in report.notes:
        typer.echo(f"note: {note}")
