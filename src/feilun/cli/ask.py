"""`feilun ask KB "question"`: an answer from a knowledge base, with its citations."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table, spinner

if TYPE_CHECKING:
    from feilun.core.protocols import Grounding


def ask(
    kb: Annotated[str, typer.Argument(help="Knowledge base: NAME or NAME@VERSION.")],
    question: Annotated[str, typer.Argument(help="The question.")],
    model: Annotated[
        str | None, typer.Option(help="Model that answers (default: the packaged chat model).")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=20, help="Passages retrieved.")] = 5,
    mode: Annotated[str, typer.Option(help="Retrieval: bm25, dense or hybrid.")] = "bm25",
    max_tokens: Annotated[int, typer.Option(min=1, help="Most new tokens.")] = 256,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Answer from a knowledge base's passages, citing them; "I don't know" when none fits."""
    from feilun.app.answering import open_rag_model
    from feilun.app.workspace import opened
    from feilun.core.protocols import GenerationParams
    from feilun.core.records import Message
    from feilun.governance.label_files import EXPLICIT_LABEL
    from feilun.knowledge.library import Library, lock_dir_of, open_vector_store
    from feilun.knowledge.rag import RagSettings
    from feilun.knowledge.retrieval import effective_mode

    messages = [Message(role="user", content=question)]
    with opened(workspace) as ws:
        library = Library(
            ws.catalog,
            ws.artifacts,
            lock_dir=lock_dir_of(ws.path),
            vector_store=open_vector_store(ws.settings.vector_store_url),
        )
        used, fallback = effective_mode(library.load(kb), mode)
        if fallback:
            typer.secho(f"warning: {fallback}", fg=typer.colors.YELLOW, err=True)
        with spinner(f"loading {model or 'the default model'}…"):
            ref, rag = open_rag_model(ws, library, kb, model, RagSettings(k=k, mode=used))
        started = time.perf_counter()
        plan = rag.plan(messages)
        retrieval_s = time.perf_counter() - started
        text, grounding = "", None
        for delta in rag.stream(messages, GenerationParams(max_tokens=max_tokens)):
            text += delta.text
            grounding = delta.grounding or grounding
            if not json:
                typer.echo(delta.text, nl=False)
        generation_s = time.perf_counter() - started - retrieval_s
    assert grounding is not None  # the last piece of a RAG stream carries it
    if json:
        timings = {"retrieval_s": round(retrieval_s, 3), "generation_s": round(generation_s, 3)}
        print_json({"model": ref, "answer": text, **grounding.model_dump(), "timings": timings})
        return
    typer.echo()
    typer.secho(EXPLICIT_LABEL, dim=True)
    _print_grounding(grounding, len(plan.passages))


def _print_grounding(grounding: Grounding, passages: int) -> None:
    rows = [
        [f"[{c.number}]", c.title, " › ".join(c.heading_path[-2:]), c.page or "", c.quote]
        for c in grounding.citations
    ]
    if rows:
        print_table(
            f"citations ({len(rows)} of {passages} passages)",
            ["#", "document", "section", "page", "quote"],
            rows,
        )
    for sentence in grounding.unsupported_sentences:
        typer.secho(f"unsupported by any passage: {sentence}", fg="yellow", err=True)
