"""The Library: where knowledge bases live, how a version is stored, read and cached.

A knowledge base (KB) is a name whose versions are Index records. A version's files (chunks,
BM25 postings, vectors, and a manifest naming them) are content-addressed artifacts written
before its record, and a record is saved in one transaction, so a reader sees a whole old or
a whole new version and never a torn one. Loaded versions are cached by record id: a version
never changes, so the cache needs no invalidation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pydantic

from feilun.core.errors import ArtifactError, ConfigError
from feilun.core.protocols import Embedder
from feilun.core.records import Index
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.chunking import ChunkSettings
from feilun.knowledge.dense import VectorStore, dense_from_bytes
from feilun.knowledge.embedders import open_embedder
from feilun.knowledge.lexical import chunk_terms_from_bytes, lexical_from_bytes
from feilun.knowledge.search import ChunkIndex
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog, resolve_version

logger = logging.getLogger(__name__)

KIND = Index.kind
# 2: chunk terms stored (`chunk_terms`); a format-1 KB still loads, and RAG analyses the text
# of the chunks it retrieves instead (a new version of it, e.g. `kb add`, stores them).
MANIFEST_FORMAT = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DocumentEntry(pydantic.BaseModel):
    """One document of a KB version."""

    document: str = pydantic.Field(description="Its name: the key `kb add`/`kb remove` use.")
    document_id: str
    title: str = ""
    chunks: int = 0


class Skipped(pydantic.BaseModel):
    """A document left out of a KB, and why."""

    document: str
    reason: str


class Manifest(pydantic.BaseModel):
    """What one KB version is made of; stored as a JSON artifact named by its record."""

    format: int = MANIFEST_FORMAT
    source: str = pydantic.Field(
        "", description="Where documents came from: collection or dataset."
    )
    chunking: ChunkSettings = pydantic.Field(default_factory=ChunkSettings)
    embedder: str = pydantic.Field("", description="Embedder name; empty for a BM25-only KB.")
    terms: list[str] = pydantic.Field(default_factory=list, description="Domain terms (analyzer).")
    chunks: str = pydantic.Field(description="Artifact: one JSON chunk per line.")
    lexical: str = pydantic.Field(description="Artifact: BM25 postings (.npz).")
    vectors: str = pydantic.Field("", description="Artifact: chunk vectors (.npy), if dense.")
    chunk_terms: str = pydantic.Field(
        "", description="Artifact: each chunk's term ids (.npz); empty in format 1."
    )
    documents: list[DocumentEntry] = pydantic.Field(default_factory=list)
    skipped: list[Skipped] = pydantic.Field(default_factory=list)


@dataclass
class LoadedKb:
    """One KB version in memory."""

    record: Index
    manifest: Manifest
    index: ChunkIndex


@dataclass
class Library:
    """The knowledge bases of a workspace; build one per process and share it across threads."""

    catalog: SqlCatalog
    artifacts: ArtifactStore
    lock_dir: Path | None = None  # where writers take a per-KB lock; None: no file lock
    open_embedder: Callable[[str], Embedder] = open_embedder
    vector_store: VectorStore | None = None  # None: dense search in process (the default)
    cache_size: int = 4  # KB versions kept loaded
    _embedders: dict[str, Embedder] = field(default_factory=dict, repr=False)
    _loaded: OrderedDict[str, LoadedKb] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warned: set[str] = field(default_factory=set, repr=False)

    def embedder(self, name: str) -> Embedder:
        """The embedder called `name`, loaded once."""
        with self._lock:
            if name not in self._embedders:
                self._embedders[name] = self.open_embedder(name)
            return self._embedders[name]

    def load(self, ref: str) -> LoadedKb:
        """The KB version `name` (latest), `name@3` or `name@latest`, loaded (cached)."""
        record = resolve_kb(self.catalog, ref)
        with self._lock:
            found = self._loaded.get(record.id)
            if found is not None:
                self._loaded.move_to_end(record.id)
                return found
        loaded = read_version(self.artifacts, record, self.vector_store)
        with self._lock:
            self._loaded[record.id] = loaded
            while len(self._loaded) > self.cache_size:
                self._loaded.popitem(last=False)
        return loaded

    def forget(self, records: list[Index]) -> None:
        """Drop these versions from the cache (their KB was deleted)."""
        with self._lock:
            for record in records:
                self._loaded.pop(record.id, None)

    def warn_once(self, message: str) -> None:
        """Log `message` as a warning the first time this Library meets it (not per request)."""
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
        logger.warning("%s", message)

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[None]:
        """Hold the writer lock of KB `name`: one change at a time, readers never wait."""
        if self.lock_dir is None:
            yield
            return
        import fcntl

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with (self.lock_dir / f"kb-{name}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def check_kb_name(name: str) -> None:
    """Refuse names that would be ambiguous in a `name@version` reference."""
    if not _NAME.match(name):
        raise ConfigError(
            f"knowledge base name {name!r} is not allowed",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def list_kbs(catalog: SqlCatalog) -> list[Index]:
    """The latest version of every KB, by name."""
    return [cast(Index, r) for r in catalog.latest(KIND)]


def kb_versions(catalog: SqlCatalog, name: str) -> list[Index]:
    """Every version of KB `name`, newest first."""
    return [cast(Index, r) for r in catalog.find(KIND, name)]


def resolve_kb(catalog: SqlCatalog, ref: str) -> Index:
    """The Index record of `name`, `name@3` or `name@latest`; NotFound lists the KBs."""
    hint = "list them with `feilun kb list`, or make one with `feilun kb create NAME --from SOURCE`"
    return cast(Index, resolve_version(catalog, KIND, ref, noun="knowledge base", hint=hint))


def read_manifest(artifacts: ArtifactStore, record: Index) -> Manifest:
    """The manifest a KB version's record names."""
    try:
        manifest = Manifest.model_validate_json(artifacts.read_bytes(record.artifact))
    except pydantic.ValidationError as e:
        raise ArtifactError(
            f"knowledge base {record.ref}: manifest {record.artifact} is not one this Feilun "
            f"reads ({e.error_count()} problems)",
            "upgrade Feilun, or rebuild the knowledge base with `feilun kb create`",
        ) from e
    if manifest.format > MANIFEST_FORMAT:
        raise ArtifactError(
            f"knowledge base {record.ref} was stored in format {manifest.format} by a newer "
            f"Feilun; this one reads formats up to {MANIFEST_FORMAT}",
            "upgrade Feilun, or rebuild the knowledge base with `feilun kb create`",
        )
    return manifest


def open_vector_store(url: str) -> VectorStore | None:
    """The vector store `vector_store_url` names: none (embedded search) or pgvector."""
    if not url:
        return None
    from feilun.knowledge.pgvector import PgVectorStore

    return PgVectorStore.open(url)


def vector_table(record: Index) -> str:
    """The name of a KB version's vectors in a VectorStore (record ids are `[0-9a-z_]`)."""
    return f"kb_vectors_{record.id}"


def read_version(
    artifacts: ArtifactStore, record: Index, vector_store: VectorStore | None = None
) -> LoadedKb:
    """Load a KB version's chunks, postings and vectors (each verified against its digest).

    With a `vector_store`, dense search runs there; a version built before the store was
    configured is written to it first.
    """
    manifest = read_manifest(artifacts, record)
    rows = [json.loads(line) for line in artifacts.read_bytes(manifest.chunks).splitlines()]
    lexical = lexical_from_bytes(artifacts.read_bytes(manifest.lexical))
    dense = None
    if manifest.vectors:
        dense = dense_from_bytes(artifacts.read_bytes(manifest.vectors), manifest.embedder)
    terms = None
    if manifest.chunk_terms:
        terms = chunk_terms_from_bytes(artifacts.read_bytes(manifest.chunk_terms))
    else:
        logger.info(
            "knowledge base %s was stored without chunk terms (format %d): RAG analyses the "
            "chunks it retrieves; any change (`feilun kb add`) stores them",
            record.ref,
            manifest.format,
        )
    index = ChunkIndex(
        rows=rows,
        analyzer=Analyzer(manifest.terms),
        lexical=lexical,
        dense=dense,
        chunk_terms=terms,
    )
    sizes = [lexical.size, *([] if dense is None else [dense.vectors.shape[0]])]
    sizes += [] if terms is None else [terms.size]
    if any(size != len(rows) for size in sizes):
        raise ArtifactError(
            f"knowledge base {record.ref} is inconsistent: {len(rows)} chunks, "
            f"{lexical.size} in BM25, {0 if dense is None else dense.vectors.shape[0]} vectors, "
            f"{'no' if terms is None else terms.size} chunk term sets",
            "rebuild it with `feilun kb create`",
        )
    if vector_store is not None and dense is not None:
        table = vector_table(record)
        vector_store.write(table, [row["id"] for row in rows], dense.vectors)
        index.dense = replace(dense, store=vector_store, table=table)
    logger.debug("loaded knowledge base %s: %d chunks", record.ref, len(rows))
    return LoadedKb(record=record, manifest=manifest, index=index)


def rows_to_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Chunks as JSON lines (sorted keys: the same chunks give the same artifact)."""
    lines = (json.dumps(row, ensure_ascii=False, sort_keys=True) for row in rows)
    return ("\n".join(lines) + "\n").encode() if rows else b""


def lock_dir_of(workspace: Path) -> Path:
    """Where writers of a workspace's KBs take their locks."""
    return Path(os.fspath(workspace)) / "locks"
