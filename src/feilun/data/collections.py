"""What a collection holds: the latest version of each of its Documents, and its quarantine.

A collection is the `collection` field of Document and Quarantine records; `ingest` also names
them `<collection>/<path>`. The filtering happens in SQL, not by loading every record.
"""

from __future__ import annotations

from typing import cast

from feilun.core.records import Document, Quarantine
from feilun.store.catalog import SqlCatalog


def list_documents(catalog: SqlCatalog, collection: str) -> list[Document]:
    """The latest version of each Document of `collection`, ordered by name."""
    found = catalog.latest(Document.kind, fields={"collection": collection})
    return cast(list[Document], found)


def list_collections(catalog: SqlCatalog) -> list[str]:
    """Names of the collections that hold documents or quarantined files, sorted."""
    names = set(catalog.distinct(Document.kind, "collection"))
    return sorted(names | set(catalog.distinct(Quarantine.kind, "collection")))


def list_quarantine(catalog: SqlCatalog, collection: str | None = None) -> list[Quarantine]:
    """Files still quarantined (of one collection, or all), ordered by name.

    A quarantine ends when the same name is ingested later (a Document created after it).
    """
    fields = None if collection is None else {"collection": collection}
    current = []
    for record in catalog.latest(Quarantine.kind, fields=fields):
        documents = catalog.find(Document.kind, record.name)  # newest version first
        if not documents or documents[0].created_at < record.created_at:
            current.append(cast(Quarantine, record))
    return current
