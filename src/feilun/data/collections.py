"""What a collection holds: the latest version of each of its Documents, and its quarantine.

A collection is the `collection` field of Document and Quarantine records; `ingest` also names
them `<collection>/<path>`. The filtering happens in SQL, not by loading every record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from feilun.core.records import Document, Quarantine

if TYPE_CHECKING:  # pipelines use the helpers below without loading the store (SQLAlchemy)
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


def original_sha256(document: Document) -> str:
    """The sha256 of the file a Document was ingested from ("" if none).

    Documents ingested before `Document.sha256` existed kept it in `source_id`.
    """
    if document.sha256:
        return document.sha256
    is_legacy = document.meta.get("original") == f"sha256:{document.source_id}"
    return document.source_id if is_legacy else ""


def document_source_id(document: Document) -> str:
    """The id a Document's source gives it (its path, for a file); legacy ones: from the name."""
    if document.sha256 or not original_sha256(document):
        return document.source_id
    return document.name.removeprefix(f"{document.collection}/")
