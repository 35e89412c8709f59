"""Knowledge bases: create from a collection or dataset, add, remove, domain terms, delete.

Every change makes the next version from the latest one, under the KB's writer lock: kept
chunks keep their vectors (only new chunks are embedded), BM25 is rebuilt over all chunks
(its statistics are global), the files are stored, then one catalog transaction publishes
the version. A document with no text is skipped and listed with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import Document, Index
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.chunking import ChunkSettings, chunk_document
from feilun.knowledge.dense import DenseIndex, dense_to_bytes
from feilun.knowledge.embedders import DEFAULT_EMBEDDER, NO_EMBEDDER
from feilun.knowledge.lexical import chunk_terms_to_bytes, lexical_to_bytes
from feilun.knowledge.library import (
    KIND,
    DocumentEntry,
    Library,
    LoadedKb,
    Manifest,
    Skipped,
    check_kb_name,
    kb_versions,
    resolve_kb,
    rows_to_bytes,
    vector_table,
)
from feilun.knowledge.search import ChunkIndex, build_chunk_index
from feilun.knowledge.sources import find_documents, read_source

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total): stage is chunk or embed
NO_TEXT = "no extractable text (empty once whitespace is removed)"


@dataclass
class Change:
    """A new KB version and what went into it."""

    record: Index
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class _Plan:
    """What the next version is: the documents to (re)index, to drop, and its settings."""

    source: str
    chunking: ChunkSettings
    embedder: str
    terms: list[str]
    add: list[Document] = field(default_factory=list)
    remove: set[str] = field(default_factory=set)
    inputs: list[str] = field(default_factory=list)
    note: str = ""


def create_kb(
    library: Library,
    name: str,
    source: str,
    *,
    chunking: ChunkSettings | None = None,
    embedder: str = DEFAULT_EMBEDDER,
    terms: Sequence[str] = (),
    progress: Progress | None = None,
) -> Change:
    """Create KB `name` (version 1) from a collection or dataset."""
    check_kb_name(name)
    if embedder != NO_EMBEDDER:
        library.embedder(embedder)  # an unknown or missing embedder fails before any work
    with library.writing(name):
        existing = kb_versions(library.catalog, name)
        if existing:
            raise ConfigError(
                f"knowledge base {name!r} exists (version {existing[0].version})",
                f"change it with `feilun kb add {name} …` / `feilun kb remove {name} …`, "
                "or pick another name",
            )
        found = read_source(library.catalog, library.artifacts, source)
        plan = _Plan(
            source=found.label,
            chunking=chunking or ChunkSettings(),
            embedder="" if embedder == NO_EMBEDDER else embedder,
            terms=list(dict.fromkeys(t.strip() for t in terms if t.strip())),
            add=found.documents,
            inputs=found.inputs,
            note=f"created from {found.label}",
        )
        return _publish(library, name, None, plan, progress)


def add_documents(
    library: Library,
    name: str,
    documents: Sequence[str] = (),
    *,
    source: str | None = None,
    progress: Progress | None = None,
) -> Change:
    """Add (or refresh) documents by name, and/or every new or changed one of a source."""
    if not documents and source is None:
        raise ConfigError("nothing to add", "name documents, or pass --from COLLECTION_OR_DATASET")
    with library.writing(name):
        base = library.load(name)
        wanted = find_documents(library.catalog, documents) if documents else []
        if source is not None:
            indexed = {e.document: e.document_id for e in base.manifest.documents}
            found = read_source(library.catalog, library.artifacts, source)
            wanted += [d for d in found.documents if indexed.get(d.name) != d.id]
        if not wanted:  # nothing new or changed: no new version
            return Change(base.record)
        plan = _plan_from(base, note=f"added {len(wanted)} documents")
        plan.add, plan.inputs = wanted, [base.record.id, *(d.id for d in wanted)]
        return _publish(library, name, base, plan, progress)


def remove_documents(
    library: Library, name: str, documents: Sequence[str], *, progress: Progress | None = None
) -> Change:
    """Remove documents by name (or document id, or source id) from KB `name`."""
    with library.writing(name):
        base = library.load(name)
        keys = _document_keys(base)
        missing = [d for d in documents if d not in keys]
        if missing:
            shown = ", ".join(sorted({e.document for e in base.manifest.documents})[:10])
            raise NotFound(
                f"{', '.join(repr(m) for m in missing)} not in knowledge base {name!r}",
                f"see its documents with `feilun kb show {name}`; some: {shown or 'none'}",
            )
        plan = _plan_from(base, note=f"removed {len(documents)} documents")
        plan.remove = {keys[d] for d in documents}
        plan.inputs = [base.record.id]
        return _publish(library, name, base, plan, progress)


def add_terms(
    library: Library, name: str, terms: Sequence[str], *, progress: Progress | None = None
) -> Change:
    """Add domain terms to KB `name`'s analyzer; BM25 is rebuilt with them (a new version)."""
    cleaned = [t.strip() for t in terms if t.strip()]
    if not cleaned:
        raise ConfigError("no terms given", f"e.g. `feilun kb terms add {name} 燃气经营者 PE-100`")
    with library.writing(name):
        base = library.load(name)
        plan = _plan_from(base, note=f"terms: +{', '.join(cleaned)}")
        plan.terms = list(dict.fromkeys([*plan.terms, *cleaned]))
        plan.inputs = [base.record.id]
        return _publish(library, name, base, plan, progress)


def delete_kb(library: Library, name: str) -> list[Index]:
    """Delete every version of KB `name` from the catalog; return the versions deleted.

    Their artifacts stay in the content-addressed store (another version or KB may share
    them); their tables in the vector store are dropped. NotFound lists the KBs that exist.
    """
    with library.writing(name):
        versions = versions_to_delete(library, name)
        library.catalog.remove(KIND, name)
        library.forget(versions)
        if library.vector_store is not None:
            for record in versions:
                library.vector_store.drop(vector_table(record))
    logger.info("knowledge base %s deleted (%d versions)", name, len(versions))
    return versions


def versions_to_delete(library: Library, name: str) -> list[Index]:
    """Every version of KB `name`, newest first; NotFound lists the KBs when there is none."""
    if "@" in name:
        raise ConfigError(
            f"{name!r} names one version; deleting removes every version of a knowledge base",
            f"give the name alone: `feilun kb delete {name.partition('@')[0]}`",
        )
    versions = kb_versions(library.catalog, name)
    if not versions:
        resolve_kb(library.catalog, name)  # raises NotFound, listing the knowledge bases
    return versions


def index_documents(
    documents: Iterable[Document],
    chunking: ChunkSettings,
    analyzer: Analyzer,
    embedder: Any = None,
    progress: Progress | None = None,
) -> tuple[ChunkIndex, list[DocumentEntry], list[Skipped]]:
    """Chunk and index documents in memory (what `kb eval --beir` does, with no workspace)."""
    rows, entries, skipped = _chunk_all(list(documents), chunking, progress)
    embed_progress = _stage(progress, "embed")
    index = build_chunk_index(rows, analyzer, embedder, progress=embed_progress)
    return index, entries, skipped


def _plan_from(base: LoadedKb, note: str) -> _Plan:
    manifest = base.manifest
    return _Plan(
        source=manifest.source,
        chunking=manifest.chunking,
        embedder=manifest.embedder,
        terms=list(manifest.terms),
        note=note,
    )


def _document_keys(base: LoadedKb) -> dict[str, str]:
    """Every way to name a document of the KB → its name."""
    keys: dict[str, str] = {}
    for row in base.index.rows:
        meta = row.get("meta", {})
        for key in (meta.get("document"), row.get("document_id"), meta.get("source_id")):
            if key:
                keys.setdefault(key, meta["document"])
    return keys


def _chunk_all(
    documents: list[Document], chunking: ChunkSettings, progress: Progress | None
) -> tuple[list[dict[str, Any]], list[DocumentEntry], list[Skipped]]:
    rows: list[dict[str, Any]] = []
    entries, skipped = [], []
    latest = {d.name: d for d in documents}  # a name given twice: the last one counts
    for n, document in enumerate(latest.values(), 1):
        chunks = chunk_document(document, chunking)
        if not chunks:
            skipped.append(Skipped(document=document.name, reason=NO_TEXT))
        else:
            rows += [chunk.model_dump(mode="json") for chunk in chunks]
            entries.append(
                DocumentEntry(
                    document=document.name,
                    document_id=document.id,
                    title=document.title,
                    chunks=len(chunks),
                )
            )
        if progress is not None:
            progress("chunk", n, len(latest))
    return rows, entries, skipped


def _publish(
    library: Library, name: str, base: LoadedKb | None, plan: _Plan, progress: Progress | None
) -> Change:
    """Build the next version of KB `name` from `base` and the plan, store it, publish it."""
    drop = plan.remove | {d.name for d in plan.add}
    rows: list[dict[str, Any]] = []
    vectors = None
    entries: list[DocumentEntry] = []
    if base is not None:
        keep = [i for i, r in enumerate(base.index.rows) if r["meta"]["document"] not in drop]
        rows = [base.index.rows[i] for i in keep]
        entries = [e for e in base.manifest.documents if e.document not in drop]
        if base.index.dense is not None:
            vectors = base.index.dense.vectors[keep]
    new_rows, new_entries, skipped = _chunk_all(plan.add, plan.chunking, progress)
    if vectors is not None:
        unknown = np.full((len(new_rows), vectors.shape[1]), np.nan, dtype=np.float32)
        vectors = np.concatenate([vectors, unknown])
    # The embedder (seconds to load) only when there is something to embed.
    is_embedding = bool(plan.embedder) and (vectors is None or bool(new_rows))
    index = build_chunk_index(
        rows + new_rows,
        Analyzer(plan.terms),
        library.embedder(plan.embedder) if is_embedding else None,
        vectors=vectors,
        progress=_stage(progress, "embed"),
    )
    if plan.embedder and not is_embedding and vectors is not None:
        index.dense = DenseIndex(plan.embedder, vectors)
    record = _store(library, name, plan, index, [*entries, *new_entries], skipped)
    removed = sorted(plan.remove)
    logger.info("knowledge base %s: %s", record.ref, plan.note)
    return Change(record, added=[e.document for e in new_entries], removed=removed, skipped=skipped)


def _store(
    library: Library,
    name: str,
    plan: _Plan,
    index: ChunkIndex,
    entries: list[DocumentEntry],
    skipped: list[Skipped],
) -> Index:
    put = library.artifacts.put_bytes
    manifest = Manifest(
        source=plan.source,
        chunking=plan.chunking,
        embedder=plan.embedder,
        terms=plan.terms,
        chunks=put(rows_to_bytes(index.rows)),
        lexical=put(lexical_to_bytes(index.lexical)),
        vectors=put(dense_to_bytes(index.dense)) if index.dense is not None else "",
        chunk_terms=(
            put(chunk_terms_to_bytes(index.chunk_terms)) if index.chunk_terms is not None else ""
        ),
        documents=entries,
        skipped=skipped,
    )
    version = library.catalog.next_version(KIND, name)
    record = Index(
        name=name,
        version=version,
        inputs=list(dict.fromkeys(plan.inputs)),
        artifact=put(manifest.model_dump_json().encode()),
        embedder=plan.embedder,
        chunk_count=index.size,
        meta={
            "source": plan.source,
            "documents": len(entries),
            "skipped": len(skipped),
            "terms": len(plan.terms),
            "change": plan.note,
        },
    )
    if library.catalog.find(KIND, name, version):  # a writer outside this lock got there first
        raise ConfigError(
            f"knowledge base {name}@{version} was saved by someone else meanwhile",
            "run the command again; it will build on their version",
        )
    store = library.vector_store
    if store is not None and index.dense is not None:  # the vectors first, then the version
        store.write(vector_table(record), [row["id"] for row in index.rows], index.dense.vectors)
    try:
        library.catalog.save(record)
    except BaseException:
        if store is not None and index.dense is not None:
            store.drop(vector_table(record))
        raise
    return record


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
