"""`feilun data clean|list|show|diff|export`: clean a collection into versioned datasets.

Each command opens the workspace, calls one function of `feilun.data` and prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from json import dumps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table
from feilun.core.errors import NotFound

if TYPE_CHECKING:
    from feilun.app.workspace import Workspace
    from feilun.core.records import Dataset
    from feilun.data.items import Rejection
    from feilun.data.pipeline import OperatorReport, ProgressFn
    from feilun.data.recipes import Recipe

PREVIEW_CHARS = 80

Ref = Annotated[str, typer.Argument(help="Dataset reference: NAME, NAME@3 or NAME@latest.")]


class ExportFormat(StrEnum):
    """File formats of `feilun data export`."""

    jsonl = "jsonl"
    parquet = "parquet"


def clean(
    collection: Annotated[str, typer.Argument(help="Collection of ingested documents.")],
    recipe: Annotated[
        Path, typer.Option("--recipe", "-r", help="Recipe YAML, e.g. recipes/data/default.yaml.")
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset name; saved as its next version.")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Recipe overrides, e.g. near_dedup.threshold=0.9.", show_default=False),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="Registered engine: local (in-process) or ray (Ray Data).")
    ] = "local",
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Run a cleaning recipe over a collection and save the result as a new dataset version."""
    from feilun.app.workspace import opened
    from feilun.core.registry import lookup
    from feilun.data.collections import list_documents
    from feilun.data.datasets import check_dataset_name, save_cleaned
    from feilun.data.pipeline import items_from_documents, run_pipeline
    from feilun.data.recipes import load_recipe

    check_dataset_name(dataset)
    loaded = load_recipe(recipe, overrides or [])
    lookup("engines", engine)  # an unknown engine fails before any document is read
    with opened(workspace) as ws:
        documents = list_documents(ws.catalog, collection)
        if not documents:
            raise NotFound(
                f"collection {collection!r} has no documents",
                f"ingest files first: `feilun data ingest PATH --collection {collection}`",
            )
        items = items_from_documents(documents)
        with _progress_bars(loaded, quiet=json) as progress:
            result = run_pipeline(items, loaded, engine=engine, progress=progress)
        saved = save_cleaned(ws.catalog, ws.artifacts, dataset, documents, loaded, result)
    if json:
        print_json({"dataset": _manifest(saved), "reports": [r.to_json() for r in result.reports]})
        return
    _print_reports(
        f"{collection}: {len(items)} items from {len(documents)} documents", result.reports
    )
    typer.echo(
        f"saved dataset {saved.ref}: {saved.count} rows, {len(result.rejected)} rejected, "
        f"content {saved.content_hash}"
    )
    if result.rejected:
        typer.echo(f"see the rejected items with `feilun data show {saved.ref} --rejected`")


def list_datasets(
    name: Annotated[
        str | None, typer.Argument(help="Only versions of this dataset.", show_default=False)
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """List datasets, every version, newest first."""
    from feilun.app.workspace import opened
    from feilun.data.datasets import list_datasets as find

    with opened(workspace) as ws:
        datasets = find(ws.catalog, name)
    if json:
        print_json([_manifest(d) for d in datasets])
        return
    rows = [
        (
            d.ref,
            d.count,
            d.meta.get("rejected_count", 0),
            d.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            d.content_hash[:19],
            _preview(d.recipe.get("description", ""), 40),
        )
        for d in datasets
    ]
    print_table("datasets", ["dataset", "rows", "rejected", "created", "content", "recipe"], rows)


def show(
    ref: Ref,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="How many rows to show.")] = 5,
    rejected: Annotated[
        bool, typer.Option("--rejected", help="Show the items the recipe removed, and why.")
    ] = False,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Show a dataset's manifest (recipe, counts, lineage) and its first rows."""
    from feilun.app.workspace import opened
    from feilun.data.datasets import read_rejected, read_rows, rejection_row, resolve_dataset

    removed: list[Rejection] = []
    sample: list[dict[str, Any]] = []
    with opened(workspace) as ws:
        found = resolve_dataset(ws.catalog, ref)
        if rejected:
            removed = read_rejected(ws.artifacts, found, limit=rows)
        else:
            sample = read_rows(ws.artifacts, found, limit=rows)
    total_rejected = found.meta.get("rejected_count", 0)
    if json:
        shown = [rejection_row(r) for r in removed] if rejected else sample
        print_json({"dataset": _manifest(found), "rejected" if rejected else "rows": shown})
        return
    _print_manifest(found)
    if rejected:
        removals = [
            (str(r.item.id), r.operator, str(r.reason), _preview(r.item.text)) for r in removed
        ]
        columns = ["id", "operator", "reason", "text"]
        removals, columns = _with_source_ids(removals, columns, [r.item.meta for r in removed])
        print_table(f"rejected items ({len(removed)} of {total_rejected})", columns, removals)
        return
    table = [(str(row.get("id", "")), _row_preview(row)) for row in sample]
    metas = [row.get("meta") for row in sample]
    table, columns = _with_source_ids(table, ["id", "text"], metas)
    print_table(f"rows ({len(sample)} of {found.count})", columns, table)
    if total_rejected:
        typer.echo(
            f"{total_rejected} items were rejected: `feilun data show {found.ref} --rejected`"
        )


def diff(
    a: Annotated[str, typer.Argument(help="The older dataset, e.g. NAME@1.")],
    b: Annotated[str, typer.Argument(help="The newer dataset, e.g. NAME@2.")],
    limit: Annotated[int, typer.Option(min=0, help="Ids to list per kind of change.")] = 20,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Rows added, removed and changed (same id, new content) between two datasets."""
    from dataclasses import asdict

    from feilun.app.workspace import opened
    from feilun.data.datasets import diff_datasets, resolve_dataset

    with opened(workspace) as ws:
        changes = diff_datasets(
            ws.artifacts, resolve_dataset(ws.catalog, a), resolve_dataset(ws.catalog, b)
        )
    if json:
        print_json(asdict(changes))
        return
    same = "same content" if changes.is_same_content else "different content"
    typer.echo(
        f"{changes.a} ({changes.count_a} rows) → {changes.b} ({changes.count_b} rows), {same}: "
        f"{len(changes.added)} added, {len(changes.removed)} removed, "
        f"{len(changes.changed)} changed, {changes.unchanged} unchanged"
    )
    table = [
        (kind, row_id)
        for kind, ids in (
            ("added", changes.added),
            ("removed", changes.removed),
            ("changed", changes.changed),
        )
        for row_id in ids[:limit]
    ]
    if table:
        print_table("changes", ["change", "id"], table)


def export(
    ref: Ref,
    output_format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="File format.")
    ] = ExportFormat.jsonl,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: NAME-VERSION.FORMAT here)."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="Tenant the file is for: its policy names the producer.", show_default=False
        ),
    ] = None,
    no_label: Annotated[
        bool,
        typer.Option(
            "--no-label",
            help="Leave generated rows unlabelled; needs --to and --reason (the delivery log).",
        ),
    ] = False,
    to: Annotated[
        str | None, typer.Option(help="Who receives the unlabelled file.", show_default=False)
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why it goes unlabelled.", show_default=False)
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Write a dataset's rows to a JSONL or Parquet file; generated rows carry an AIGC label.

    A row a model wrote (`meta.model`) gets a signed label under `AIGC`; check the file with
    `feilun label verify`. `--no-label` records the delivery (who, why) in the delivery log.
    """
    from feilun.app.audit import record
    from feilun.app.workspace import opened
    from feilun.core.errors import ConfigError
    from feilun.data.datasets import resolve_dataset

    if no_label and not (to and reason):
        raise ConfigError(
            "--no-label needs --to (who receives the file) and --reason (why unlabelled)",
            "add both (the delivery log keeps them 180 days), or drop --no-label",
        )
    if not no_label and (to or reason):
        raise ConfigError(
            "--to and --reason describe an unlabelled delivery; this export is labelled",
            "add --no-label to hand the file over unlabelled, or drop --to and --reason",
        )
    with opened(workspace) as ws:
        found = resolve_dataset(ws.catalog, ref)
        path = output or Path(f"{found.name}-{found.version}.{output_format.value}")
        delivery = (to, reason) if to and reason else None
        labelled = _export_labelled(ws, found, path, output_format, tenant, delivery)
        details = {"path": str(path.resolve()), "rows": found.count, "format": output_format.value}
        if labelled:
            details["labelled_rows"] = labelled
        if delivery is not None:
            details["unlabelled_to"] = delivery[0]
        record(ws, "data.exported", found.ref, details)
    if json:
        result = {"dataset": found.ref, "path": str(path), "rows": found.count}
        print_json(result | {"labelled_rows": labelled})
        return
    typer.echo(f"exported {found.ref} ({found.count} rows) to {path}")
    if labelled:
        typer.echo(f"  {labelled} generated rows carry an AIGC label: feilun label verify {path}")
    elif delivery is not None:
        typer.echo("  unlabelled: recorded in the delivery log (feilun governance deliveries list)")


def _export_labelled(
    ws: Workspace,
    dataset: Dataset,
    path: Path,
    output_format: ExportFormat,
    tenant: str | None,
    delivery: tuple[str, str] | None,
) -> int:
    """Export to a temporary file, label generated rows (or log the delivery), then rename.

    The number of rows labelled: PolicyViolation if it is not the number of model-written rows
    the dataset holds. Nothing is left at `path` unless every step succeeded.
    """
    import os
    import tempfile

    from feilun.app.moderation import policy_store
    from feilun.core.errors import PolicyViolation
    from feilun.data.datasets import export_dataset, iter_rows
    from feilun.governance.label_files import is_generated_row, label_rows_file
    from feilun.governance.labels import load_or_create_key
    from feilun.governance.workspace import LABEL_KEY_FILE, safety_dir
    from feilun.store.deliveries import Delivery, record_delivery

    _, policy = policy_store(ws).show(tenant)  # NotFound lists the tenants
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        export_dataset(ws.artifacts, dataset, tmp, format=output_format.value)
        labelled = 0
        if delivery is None:
            key = load_or_create_key(safety_dir(ws.path) / LABEL_KEY_FILE)
            labelled = label_rows_file(tmp, key, policy.labels.producer, is_generated_row)
            generated = sum(map(is_generated_row, iter_rows(ws.artifacts, dataset.artifact)))
            if labelled != generated:
                raise PolicyViolation(
                    f"{dataset.ref} holds {generated} model-written rows but {labelled} got an "
                    f"AIGC label in the {output_format.value} file: nothing was exported",
                    "report this as a bug (the rows' meta is read differently after export)",
                )
        else:
            recipient, why = delivery
            what = f"{dataset.ref} -> {path.resolve()}"
            note = Delivery(tenant or "", recipient, "export", what, False, False, why)
            record_delivery(ws.database, note)
        os.replace(tmp, path)
        return labelled
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _progress_bars(recipe: Recipe, quiet: bool) -> Iterator[ProgressFn | None]:
    """One Rich progress bar per operator, on stderr."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bars:
        tasks = [bars.add_task(f"{n}. {s.op}", total=None) for n, s in enumerate(recipe.steps, 1)]
        shown = [0] * len(tasks)

        def update(step: int, operator: str, done: int, total: int | None) -> None:
            # Redrawing on every item would cost more than a cheap operator does.
            if done == total or done - shown[step] >= 100:
                shown[step] = done
                bars.update(tasks[step], completed=done, total=total)

        yield update


def _print_reports(title: str, reports: list[OperatorReport]) -> None:
    rows = [
        (
            n,
            f"{r.operator} {r.version}",
            r.count_in,
            r.count_out,
            ", ".join(f"{k} {v}" for k, v in sorted(r.removed_by_reason.items())) or "-",
            f"{r.wall_s:.2f}",
        )
        for n, r in enumerate(reports, 1)
    ]
    print_table(title, ["#", "operator", "in", "out", "removed by reason", "seconds"], rows)


def _print_manifest(dataset: Dataset) -> None:
    recipe = dataset.recipe
    operators = ", ".join(f"{o['op']} {o.get('version', '')}" for o in recipe.get("operators", []))
    fields = [
        ("dataset", dataset.ref),
        ("id", dataset.id),
        ("created", dataset.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("rows", dataset.count),
        ("rejected", dataset.meta.get("rejected_count", 0)),
        ("content", dataset.content_hash),
        ("inputs", f"{len(dataset.inputs)} records" + _first(dataset.inputs)),
        ("recipe", str(f"{recipe.get('description', '')} ({recipe.get('source', '')})")),
        ("operators", operators),
    ]
    print_table(f"dataset {dataset.ref}", ["field", "value"], fields)
    reports = dataset.meta.get("operators", [])
    if reports:
        rows = [
            (
                r["operator"],
                r["count_in"],
                r["count_out"],
                ", ".join(f"{k} {v}" for k, v in sorted(r["removed_by_reason"].items())) or "-",
            )
            for r in reports
        ]
        print_table("operators", ["operator", "in", "out", "removed by reason"], rows)


def _manifest(dataset: Dataset) -> dict[str, Any]:
    return {"ref": dataset.ref, **dataset.model_dump(mode="json")}


def _first(ids: list[str], n: int = 3) -> str:
    return f": {', '.join(ids[:n])}{', …' if len(ids) > n else ''}" if ids else ""


def _with_source_ids(
    rows: list[tuple[Any, ...]], columns: list[str], metas: list[Any]
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """A "source id" column after "id" (the id the row's source gave it), if any row has one."""
    ids = [str(m.get("source_id", "")) if isinstance(m, Mapping) else "" for m in metas]
    if not any(ids):
        return rows, columns
    widened = [(row[0], own, *row[1:]) for row, own in zip(rows, ids, strict=True)]
    return widened, [columns[0], "source id", *columns[1:]]


def _row_preview(row: Mapping[str, Any]) -> str:
    """A row as people read it: its text, its chat turns (`role: content`, a line each), or JSON."""
    messages = row.get("messages")
    if isinstance(messages, list) and all(isinstance(m, Mapping) for m in messages):
        return "\n".join(
            f"{m.get('role', '?')}: {_preview(str(m.get('content', '')))}" for m in messages
        )
    if "text" in row:
        return _preview(str(row["text"]))
    fields = {k: v for k, v in row.items() if k != "id"}
    return _preview(dumps(fields, ensure_ascii=False, default=str))


def _preview(text: str, chars: int = PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return str(flat if len(flat) <= chars else flat[: chars - 1] + "…")
