"""Where a knowledge base's documents come from: a collection or a dataset, via the catalog.

The data stage writes Documents (kind "document", one `collection` each) and Datasets (JSONL
rows in the artifact store); this module reads them back through the catalog alone. A dataset
row becomes a Document named by the row's id, so `kb remove` can name it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from feilun.core.errors import ArtifactError, ConfigError, NotFound
from feilun.core.records import Dataset, Document
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog, parse_versioned_ref, resolve_version


@dataclass
class Source:
    """Documents to index, what they are called, and their lineage."""

    label: str  # "collection:handbook" or "dataset:qa@2"
    documents: list[Document]
    inputs: list[str] = field(default_factory=list)  # record ids, for lineage


def read_source(catalog: SqlCatalog, artifacts: ArtifactStore, spec: str) -> Source:
    """The documents of `spec`: `collection:NAME`, `dataset:NAME[@V]`, or a bare name of either.

    A bare name is a collection if one has documents, else a dataset.
    """
    kind, _, name = spec.partition(":") if ":" in spec else ("", "", spec)
    if kind not in ("", "collection", "dataset"):
        raise NotFound(
            f"unknown source kind {kind!r} in {spec!r}",
            "write collection:NAME, dataset:NAME[@VERSION], or just the name",
        )
    if kind in ("", "collection"):
        documents = collection_documents(catalog, name)
        if documents:
            return Source(f"collection:{name}", documents, [d.id for d in documents])
    if kind in ("", "dataset"):
        dataset = _find_dataset(catalog, name)
        if dataset is not None:
            documents = list(dataset_documents(artifacts, dataset))
            return Source(f"dataset:{dataset.ref}", documents, [dataset.id])
    raise NotFound(
        f"no collection or dataset named {name!r}; collections: "
        f"{', '.join(catalog.distinct(Document.kind, 'collection')) or 'none'}; datasets: "
        f"{', '.join(sorted({r.name for r in catalog.latest(Dataset.kind)})) or 'none'}",
        f"ingest documents first: `feilun data ingest PATH --collection {name}`",
    )


def collection_documents(catalog: SqlCatalog, collection: str) -> list[Document]:
    """The latest version of each Document of `collection`, by name."""
    return cast(list[Document], catalog.latest(Document.kind, fields={"collection": collection}))


def find_documents(catalog: SqlCatalog, names: Sequence[str]) -> list[Document]:
    """Documents by name (latest version), `name@version` or record id; NotFound names misses."""
    found, missing = [], []
    for ref in names:
        document = _find_document(catalog, ref)
        if document is None:
            missing.append(ref)
        else:
            found.append(document)
    if missing:
        raise NotFound(
            f"no document named {', '.join(repr(m) for m in missing)}",
            "name documents as `feilun data ingest` does (COLLECTION/PATH), or use --from",
        )
    return found


def _find_document(catalog: SqlCatalog, ref: str) -> Document | None:
    name, _, version = ref.rpartition("@") if "@" in ref else (ref, "", "")
    if version.isdigit():
        hits = catalog.find(Document.kind, name, int(version))
    else:
        hits = catalog.find(Document.kind, ref)
    if hits:
        return cast(Document, hits[0])
    if ref.startswith("doc_"):
        by_id = [d for d in catalog.find(Document.kind) if d.id == ref]
        return cast(Document, by_id[0]) if by_id else None
    return None


def _find_dataset(catalog: SqlCatalog, ref: str) -> Dataset | None:
    """The dataset `ref` names, or None when no dataset has that name (it may be a collection)."""
    try:
        name, _ = parse_versioned_ref(ref, "dataset")
    except ConfigError:
        return None
    if not catalog.find(Dataset.kind, name):
        return None
    return cast(Dataset, resolve_version(catalog, Dataset.kind, ref, noun="dataset", hint=""))


def dataset_documents(artifacts: ArtifactStore, dataset: Dataset) -> Iterator[Document]:
    """One Document per row of a dataset (rows without text become empty Documents)."""
    with artifacts.open(dataset.artifact) as stream:
        for number, line in enumerate(stream, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ArtifactError(
                    f"dataset {dataset.ref} row {number} is not JSON: {e.msg}",
                    "re-create the dataset (run `feilun data clean` again)",
                ) from e
            yield _row_document(row, dataset, number)


def _row_document(row: dict[str, Any], dataset: Dataset, number: int) -> Document:
    meta: dict[str, Any] = row["meta"] if isinstance(row.get("meta"), dict) else {}
    row_id = str(row.get("id") or f"{dataset.name}#{number}")
    text = row.get("text")
    return Document(
        id=row_id,
        name=row_id,
        collection=str(meta.get("collection", "")),
        source=str(meta.get("source", "")),
        source_id=row_id,
        language=str(meta.get("language", "")),
        title=str(meta.get("title", "")),
        text=text if isinstance(text, str) else "",
        meta={"dataset": dataset.ref},
    )
