"""The demo's steps before the first turn: ingest, clean, knowledge base, synthetic QA, seed set.

Each returns what later steps need (dataset references, file paths) as plain JSON values, so
`feilun.app.demo` can record them and skip the step when a re-run finds its inputs unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from feilun.app.answering import open_library
from feilun.app.demo_data import DemoItem, eval_rows, of_split, sft_rows, write_jsonl
from feilun.app.workspace import Workspace
from feilun.data.collections import list_documents
from feilun.data.datasets import iter_rows, resolve_dataset, save_cleaned, save_dataset
from feilun.data.ingest import ingest
from feilun.data.pipeline import items_from_documents, run_pipeline
from feilun.data.recipes import load_recipe
from feilun.data.synth import ProgressFn, SynthParams, synthesize_qa
from feilun.knowledge.bases import add_documents, create_kb
from feilun.knowledge.chunking import ChunkSettings
from feilun.knowledge.library import kb_versions
from feilun.knowledge.retrieval import retrieve
from feilun.models.packaged import SMOLLM2

#: Small chunks: a retrieved passage or two fits the 135M model's prompt cheaply.
CHUNKING = ChunkSettings(chunk_tokens=160, overlap_tokens=20)
RAG_HITS = 2
#: Synthetic QA from English passages only: the packaged 135M model writes poor Chinese.
SYNTH = {
    "per_chunk": 2,
    "max_passages": 4,
    "attempts": 1,
    "max_tokens": 64,
    "seed": 0,
    "language": "en",
    "writer": "model",  # the demo's figures are the packaged model's own pairs
}


def fingerprint(*parts: Any) -> str:
    """A short digest of a step's inputs."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


def ingest_corpus(ws: Workspace, docs: Path, collection: str) -> dict[str, Any]:
    """Ingest the corpus folder (unchanged files are skipped); the documents' ids."""
    report = ingest([docs], collection, catalog=ws.catalog, artifacts=ws.artifacts, recursive=True)
    documents = list_documents(ws.catalog, collection)
    return {
        "counts": report.counts,
        "documents": sorted(d.id for d in documents),
        "quarantined": [f.path for f in report.files if f.status == "quarantined"],
    }


def clean_corpus(ws: Workspace, collection: str, recipe: Path, dataset: str) -> dict[str, Any]:
    """Run the cleaning recipe over the collection into a new dataset version."""
    documents = list_documents(ws.catalog, collection)
    loaded = load_recipe(recipe, [])
    result = run_pipeline(items_from_documents(documents), loaded)
    saved = save_cleaned(ws.catalog, ws.artifacts, dataset, documents, loaded, result)
    return {"dataset": saved.ref, "rows": saved.count, "rejected": len(result.rejected)}


def build_kb(ws: Workspace, name: str, source: str) -> dict[str, Any]:
    """Create the knowledge base, or add what changed in `source` (no version when nothing)."""
    library = open_library(ws)
    if kb_versions(ws.catalog, name):
        change = add_documents(library, name, source=source)
    else:
        change = create_kb(library, name, source, chunking=CHUNKING)
    return {"kb": change.record.ref, **{k: change.record.meta.get(k) for k in ("documents",)}}


def synth_english(
    ws: Workspace, collection: str, dataset: str, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Synthetic grounded QA from the English documents, by the packaged model."""
    documents = [d for d in list_documents(ws.catalog, collection) if d.language == "en"]
    if not documents:
        return {"dataset": None, "rows": 0, "reason": "no English documents"}
    ref = ws.models.resolve(SMOLLM2.name).ref
    params = SynthParams(model=ref, **SYNTH)
    result = synthesize_qa(documents, ws.models.open(ref), params, progress)
    saved = save_dataset(
        ws.catalog,
        ws.artifacts,
        dataset,
        result.rows,
        inputs=[d.id for d in documents],
        recipe={**params.recipe(), "collection": collection, "languages": ["en"]},
        reports=result.reports(),
        rejected=result.rejected,
    )
    return {"dataset": saved.ref, "rows": saved.count, "model_calls": result.model_calls}


def seed_dataset(
    ws: Workspace, items: list[DemoItem], synth: str | None, dataset: str
) -> dict[str, Any]:
    """The seed training set: the question set's train items, plus the synthetic pairs."""
    rows = sft_rows(of_split(items, "train"))
    inputs = []
    if synth:
        record = resolve_dataset(ws.catalog, synth)
        rows += list(iter_rows(ws.artifacts, record.artifact))
        inputs.append(record.id)
    saved = save_dataset(ws.catalog, ws.artifacts, dataset, rows, inputs=inputs)
    return {"dataset": saved.ref, "rows": saved.count}


def eval_files(ws: Workspace, items: list[DemoItem], kb: str, folder: Path) -> dict[str, Any]:
    """The held-out eval items as QA files: without context, and with retrieved passages."""
    held_out = of_split(items, "eval")
    library = open_library(ws)
    contexts = [
        "\n\n".join(hit.text for hit in retrieve(library, kb, item.question, k=RAG_HITS))
        for item in held_out
    ]
    plain = write_jsonl(folder / "handbook-eval.jsonl", eval_rows(held_out))
    rag = write_jsonl(folder / "handbook-rag-eval.jsonl", eval_rows(held_out, contexts))
    return {"eval": str(plain), "rag_eval": str(rag), "items": len(held_out)}
