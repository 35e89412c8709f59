"""`feilun kb …`: knowledge bases — create, add, remove, list, show, query, terms, eval, delete.

Each command opens the workspace, calls one function of `feilun.knowledge` and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table, spinner
from feilun.core.errors import ConfigError

if TYPE_CHECKING:
    from feilun.knowledge.bases import Change, Progress
    from feilun.knowledge.evaluation import EvalResult
    from feilun.knowledge.library import Library

app = typer.Typer(help="Knowledge bases: chunk, index and search documents.", no_args_is_help=True)
terms_app = typer.Typer(help="Domain terms the Chinese analyzer keeps whole.", no_args_is_help=True)
app.add_typer(terms_app, name="terms")

PREVIEW_CHARS = 70


class Mode(StrEnum):
    """Retrieval modes."""

    bm25 = "bm25"
    dense = "dense"
    hybrid = "hybrid"


Name = Annotated[str, typer.Argument(help="Knowledge base name (NAME or NAME@VERSION to read).")]
From = Annotated[
    str,
    typer.Option(
        "--from", help="Collection or dataset (collection:NAME / dataset:NAME@V if both exist)."
    ),
]
ChunkTokens = Annotated[
    int, typer.Option("--chunk-tokens", min=16, help="Target chunk size in tokens.")
]
Overlap = Annotated[int, typer.Option("--overlap", min=0, help="Tokens repeated between chunks.")]
EmbedderName = Annotated[
    str, typer.Option("--embedder", help="Embedder for dense search, or 'none' for BM25 only.")
]
ModeOption = Annotated[Mode, typer.Option("--mode", "-m", help="bm25, dense or hybrid (RRF).")]


def create(
    name: Annotated[str, typer.Argument(help="Name of the new knowledge base.")],
    source: From,
    chunk_tokens: ChunkTokens = 400,
    overlap: Overlap = 60,
    embedder: EmbedderName = "all-minilm-l6-v2",
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Create a knowledge base from a collection or a dataset (version 1)."""
    from feilun.knowledge.bases import create_kb

    chunking = _chunking(chunk_tokens, overlap)
    with _library(workspace) as library, _progress(is_shown=not json) as progress:
        change = create_kb(
            library, name, source, chunking=chunking, embedder=embedder, progress=progress
        )
    _print_change(change, json)


def add(
    name: Name,
    documents: Annotated[
        list[str] | None,
        typer.Argument(help="Document names (COLLECTION/PATH) to add or refresh."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Also add every new or changed document of this source."),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Add documents (a new version); a document already in it is replaced."""
    from feilun.knowledge.bases import add_documents

    with _library(workspace) as library, _progress(is_shown=not json) as progress:
        change = add_documents(library, name, documents or [], source=source, progress=progress)
    _print_change(change, json)


def remove(
    name: Name,
    documents: Annotated[list[str], typer.Argument(help="Document names (or ids) to remove.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Remove documents (a new version)."""
    from feilun.knowledge.bases import remove_documents

    with _library(workspace) as library:
        change = remove_documents(library, name, documents)
    _print_change(change, json)


def list_kbs(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """List knowledge bases (latest version of each)."""
    from feilun.app.workspace import opened
    from feilun.knowledge.library import list_kbs as find

    with opened(workspace) as ws:
        records = find(ws.catalog)
    if json:
        print_json([{"ref": r.ref, **r.model_dump(mode="json")} for r in records])
        return
    rows = [
        (
            r.ref,
            r.meta.get("documents", ""),
            r.chunk_count,
            r.embedder or "none",
            r.meta.get("source", ""),
            r.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        )
        for r in records
    ]
    columns = ["knowledge base", "documents", "chunks", "embedder", "source", "created"]
    print_table("knowledge bases", columns, rows)


def show(
    name: Name,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Show a knowledge base: its versions, settings, documents and skipped documents."""
    from feilun.app.workspace import opened
    from feilun.knowledge.library import kb_versions, read_manifest, resolve_kb

    with opened(workspace) as ws:
        record = resolve_kb(ws.catalog, name)
        manifest = read_manifest(ws.artifacts, record)
        versions = kb_versions(ws.catalog, record.name)
    if json:
        print_json(
            {
                "ref": record.ref,
                "record": record.model_dump(mode="json"),
                "manifest": manifest.model_dump(mode="json"),
                "versions": [{"ref": v.ref, "change": v.meta.get("change", "")} for v in versions],
            }
        )
        return
    chunking = manifest.chunking
    fields = [
        ("knowledge base", record.ref),
        ("source", manifest.source),
        ("chunking", f"{chunking.chunk_tokens} tokens, {chunking.overlap_tokens} overlap"),
        ("embedder", manifest.embedder or "none (BM25 only)"),
        ("terms", ", ".join(manifest.terms) or "-"),
        ("documents", len(manifest.documents)),
        ("chunks", record.chunk_count),
        ("versions", ", ".join(f"{v.version}: {v.meta.get('change', '')}" for v in versions)),
    ]
    print_table(f"knowledge base {record.ref}", ["field", "value"], fields)
    docs = [(d.document, d.title, d.chunks) for d in manifest.documents]
    print_table("documents", ["document", "title", "chunks"], docs)
    skipped = [(s.document, s.reason) for s in manifest.skipped]
    if skipped:
        print_table("skipped", ["document", "reason"], skipped)


def query(
    name: Name,
    text: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many chunks to return (1-100).")] = 5,
    mode: ModeOption = Mode.hybrid,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", "-f", help="KEY=VALUE on chunk fields, e.g. lang=zh (repeatable)."
        ),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Find the chunks that best answer a question."""
    from feilun.knowledge.retrieval import cap_k, check_query, effective_mode, retrieve

    check_query(text)
    k, warning = cap_k(k)
    _warn(warning)
    with _library(workspace) as library:
        loaded = library.load(name)
        used, fallback = effective_mode(loaded, mode.value)
        _warn(fallback)
        with spinner(f"searching {name}"):  # loads an embedder
            hits = retrieve(library, loaded.record.ref, text, k, used, _filters(filters or []))
    if json:
        print_json({"kb": name, "mode": used, "hits": [h.model_dump() for h in hits]})
        return
    rows = [
        (
            n,
            f"{h.score:.4f}",
            h.document,
            h.page or "",
            " › ".join(h.heading_path[-2:]),
            _preview(h.text),
        )
        for n, h in enumerate(hits, 1)
    ]
    print_table(f"{name}: {used}", ["#", "score", "document", "page", "section", "text"], rows)


def delete(
    name: Annotated[str, typer.Argument(help="Knowledge base to delete (every version).")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (needed in scripts).")
    ] = False,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Delete a knowledge base: every version leaves the catalog (artifacts stay in the store)."""
    from feilun.knowledge.bases import delete_kb, versions_to_delete

    with _library(workspace) as library:
        count = len(versions_to_delete(library, name))  # an unknown name lists the KBs
        if not yes:
            if not _is_interactive():
                raise ConfigError(
                    f"refusing to delete knowledge base {name!r} ({count} versions) without "
                    "confirmation in a non-interactive shell",
                    f"pass --yes: `feilun kb delete {name} --yes`",
                )
            typer.confirm(
                f"Delete knowledge base {name!r} and all {count} of its versions?", abort=True
            )
        deleted = delete_kb(library, name)
    if json:
        print_json({"deleted": name, "versions": [r.ref for r in deleted]})
        return
    typer.echo(
        f"deleted knowledge base {name}: {len(deleted)} versions "
        "(their artifacts stay in the content-addressed store)"
    )


def _is_interactive() -> bool:
    return sys.stdin.isatty()


def terms_add(
    name: Name,
    terms: Annotated[
        list[str], typer.Argument(help="Terms to keep whole, e.g. 燃气经营者 PE-100.")
    ],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Add domain terms to a knowledge base's analyzer (BM25 is rebuilt: a new version)."""
    from feilun.knowledge.bases import add_terms

    with _library(workspace) as library:
        change = add_terms(library, name, terms)
    _print_change(change, json)


def terms_list(name: Name, workspace: options.Workspace = None, json: options.Json = False) -> None:
    """List a knowledge base's domain terms."""
    from feilun.app.workspace import opened
    from feilun.knowledge.library import read_manifest, resolve_kb

    with opened(workspace) as ws:
        manifest = read_manifest(ws.artifacts, resolve_kb(ws.catalog, name))
    if json:
        print_json(manifest.terms)
        return
    for term in manifest.terms:
        typer.echo(term)


def evaluate(
    name: Annotated[
        str | None, typer.Argument(help="Knowledge base to evaluate (not with --beir).")
    ] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help='Queries JSONL: {"_id", "text"}.')
    ] = None,
    qrels: Annotated[
        Path | None, typer.Option("--qrels", help="Judgements TSV: query-id, corpus-id, score.")
    ] = None,
    beir: Annotated[
        Path | None, typer.Option("--beir", help="BEIR folder: indexed in memory, by `_id`.")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="qrels/<split>.tsv of --beir.")] = "test",
    mode: ModeOption = Mode.hybrid,
    chunk_tokens: ChunkTokens = 400,
    overlap: Overlap = 60,
    embedder: EmbedderName = "all-minilm-l6-v2",
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Print nDCG@10, MRR@10, recall@10 and recall@100 of a KB or a BEIR folder."""
    from feilun.knowledge.embedders import embedder_for
    from feilun.knowledge.evaluation import evaluate_beir, evaluate_kb
    from feilun.knowledge.retrieval import effective_mode

    if (beir is None) == (name is None):
        raise ConfigError(
            "give a knowledge base NAME with --queries and --qrels, or --beir DIR",
            "e.g. `feilun kb eval --beir data/scifact --split test`",
        )
    with _progress(is_shown=not json) as progress:
        if beir is not None:
            result = evaluate_beir(
                beir,
                split,
                mode.value,
                chunking=_chunking(chunk_tokens, overlap),
                embedder=embedder_for(mode.value, embedder),
                progress=progress,
            )
        else:
            if queries is None or qrels is None:
                raise ConfigError("--queries and --qrels are needed", "pass both files")
            with _library(workspace) as library:
                loaded = library.load(str(name))
                used, fallback = effective_mode(loaded, mode.value)
                _warn(fallback)
                result = evaluate_kb(
                    library, loaded.record.ref, queries, qrels, used, progress=progress
                )
    _print_eval(result, json)


app.command("create")(create)
app.command("add")(add)
app.command("remove")(remove)
app.command("list")(list_kbs)
app.command("show")(show)
app.command("query")(query)
app.command("eval")(evaluate)
app.command("delete")(delete)
terms_app.command("add")(terms_add)
terms_app.command("list")(terms_list)


@contextmanager
def _library(path: Path | None) -> Iterator[Library]:
    from feilun.app.workspace import opened
    from feilun.knowledge.library import Library, lock_dir_of, open_vector_store

    with opened(path) as ws:
        yield Library(
            ws.catalog,
            ws.artifacts,
            lock_dir=lock_dir_of(ws.path),
            vector_store=open_vector_store(ws.settings.vector_store_url),
        )


def _chunking(chunk_tokens: int, overlap: int) -> Any:
    from feilun.knowledge.chunking import ChunkSettings

    if overlap >= chunk_tokens:
        raise ConfigError(
            f"--overlap {overlap} must be < --chunk-tokens {chunk_tokens}",
            "use a smaller overlap (about a seventh of the chunk size works well)",
        )
    return ChunkSettings(chunk_tokens=chunk_tokens, overlap_tokens=overlap)


def _filters(values: list[str]) -> dict[str, str]:
    parsed = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter {value!r} is not KEY=VALUE", "e.g. --filter lang=zh")
        parsed[key.strip()] = wanted.strip()
    return parsed


def _print_change(change: Change, json: bool) -> None:
    record = change.record
    if json:
        print_json(
            {
                "ref": record.ref,
                "record": record.model_dump(mode="json"),
                "added": change.added,
                "removed": change.removed,
                "skipped": [s.model_dump() for s in change.skipped],
            }
        )
        return
    typer.echo(
        f"knowledge base {record.ref}: {record.meta.get('documents', 0)} documents, "
        f"{record.chunk_count} chunks ({record.meta.get('change', '')}); "
        f"{len(change.added)} added, {len(change.removed)} removed, {len(change.skipped)} skipped"
    )
    for skipped in change.skipped:
        typer.echo(f"skipped {skipped.document}: {skipped.reason}")


def _print_eval(result: EvalResult, json: bool) -> None:
    if json:
        print_json(result.to_json())
        return
    rows = [(metric, f"{value:.4f}") for metric, value in result.metrics.items()]
    title = (
        f"{result.mode}: {result.queries} queries, {result.documents} documents, "
        f"{result.chunks} chunks"
    )
    print_table(title, ["metric", "value"], rows)


@contextmanager
def _progress(is_shown: bool) -> Iterator[Progress | None]:
    """One Rich bar per stage (chunk, embed, query) on stderr."""
    if not is_shown:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress("{task.description:<6}", *columns, console=Console(stderr=True)) as bars:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update


def _warn(warning: str | None) -> None:
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


def _preview(text: str, chars: int = PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"
