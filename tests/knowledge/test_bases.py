"""Knowledge bases: versions, incremental changes, sources, and concurrent update + query."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import Document
from feilun.knowledge.bases import (
    add_documents,
    add_terms,
    create_kb,
    delete_kb,
    remove_documents,
)
from feilun.knowledge.library import Library, kb_versions, list_kbs, resolve_kb
from feilun.knowledge.retrieval import retrieve
from feilun.knowledge.sources import read_source

from .conftest import OSHA, SMOKING, FakeEmbedder, document

GAS_NAME = "laws/城镇燃气管理条例(2016-02-06).md"


def test_create_query_and_versions(library: Library, fake_embedder: FakeEmbedder) -> None:
    change = create_kb(library, "laws", "laws", embedder="fake-bow")
    record = change.record
    assert record.ref == "laws@1" and record.embedder == "fake-bow"
    assert len(change.added) == 3 and record.meta["source"] == "collection:laws"
    assert len(record.inputs) == 3 and library.catalog.lineage(record.id)
    hits = retrieve(library, "laws", "燃气经营者停业歇业要提前多久报告？", k=3)
    assert hits[0].document == GAS_NAME and "第" in hits[0].heading_path[-1]
    embedded = sum(fake_embedder.calls)
    assert embedded == record.chunk_count + 1  # every chunk, then the query

    with pytest.raises(ConfigError, match="knowledge base 'laws' exists"):
        create_kb(library, "laws", "laws", embedder="fake-bow")
    assert [r.ref for r in list_kbs(library.catalog)] == ["laws@1"]


def test_add_remove_terms_make_versions_and_reuse_vectors(
    library: Library, fake_embedder: FakeEmbedder
) -> None:
    v1 = create_kb(library, "laws", "laws", embedder="fake-bow").record
    fake_embedder.calls.clear()
    smoking = library.catalog.save(document(SMOKING, collection="other"))
    v2 = add_documents(library, "laws", [smoking.name]).record
    assert v2.version == 2 and v2.meta["documents"] == 4
    assert sum(fake_embedder.calls) == v2.chunk_count - v1.chunk_count  # only the new chunks

    fake_embedder.calls.clear()
    v3 = remove_documents(library, "laws", [GAS_NAME]).record
    assert not fake_embedder.calls and v3.meta["documents"] == 3
    assert library.load("laws").index.dense is not None
    assert all(h.document != GAS_NAME for h in retrieve(library, "laws", "燃气", 10, "bm25"))
    # Old versions stay readable as they were.
    assert retrieve(library, "laws@2", "燃气", 1, "bm25")[0].document == GAS_NAME

    v4 = add_terms(library, "laws", ["控烟工作"]).record
    assert library.load("laws").manifest.terms == ["控烟工作"] and v4.chunk_count == v3.chunk_count
    hits = retrieve(library, "laws", "控烟工作", 1, "bm25")
    assert "控烟工作" in hits[0].text
    assert [r.version for r in kb_versions(library.catalog, "laws")] == [4, 3, 2, 1]
    assert resolve_kb(library.catalog, "laws@2").id == v2.id


def test_refresh_from_source_adds_only_new_or_changed(library: Library) -> None:
    create_kb(library, "laws", "laws", embedder="none")
    unchanged = add_documents(library, "laws", source="laws")
    assert unchanged.added == [] and unchanged.record.version == 1  # no new version
    old = library.catalog.find("document", GAS_NAME)[0]
    assert isinstance(old, Document)
    library.catalog.save(replace_text(old, old.text + "\n\n第五十六条 新增的条文。"))
    changed = add_documents(library, "laws", source="laws")
    assert changed.added == [GAS_NAME]
    assert "第五十六条" in retrieve(library, "laws", "新增的条文", 1, "bm25")[0].text


def replace_text(doc: Document, text: str) -> Document:
    return Document(
        **{
            **doc.model_dump(exclude={"id", "content_hash"}),
            "text": text,
            "version": doc.version + 1,
        }
    )


def test_document_without_text_is_skipped_with_reason(library: Library) -> None:
    library.catalog.save(Document(name="laws/scan.pdf", collection="laws", text="  \n"))
    change = create_kb(library, "laws", "laws", embedder="none")
    assert [(s.document, s.reason) for s in change.skipped] == [
        ("laws/scan.pdf", "no extractable text (empty once whitespace is removed)")
    ]
    assert library.load("laws").manifest.skipped == change.skipped


def test_dataset_source(library: Library) -> None:
    from feilun.data.datasets import save_dataset  # only the test writes a dataset

    rows = [
        {"id": "r1", "text": "压力管道应当定期检验。", "meta": {"title": "规程", "language": "zh"}},
        {"id": "r2", "text": "", "meta": {}},
        {"id": "r3", "messages": [{"role": "user", "content": "hi"}]},
    ]
    save_dataset(library.catalog, library.artifacts, "notes", rows)
    source = read_source(library.catalog, library.artifacts, "dataset:notes@1")
    assert source.label == "dataset:notes@1" and [d.name for d in source.documents] == [
        "r1",
        "r2",
        "r3",
    ]
    change = create_kb(library, "notes", "notes", embedder="none")
    assert change.added == ["r1"] and {s.document for s in change.skipped} == {"r2", "r3"}
    assert retrieve(library, "notes", "压力管道", 1, "bm25")[0].title == "规程"
    remove_documents(library, "notes", ["r1"])
    assert retrieve(library, "notes", "压力管道", 1, "bm25") == []


def test_bad_names_and_sources(library: Library) -> None:
    with pytest.raises(ConfigError, match="name 'a b' is not allowed"):
        create_kb(library, "a b", "laws")
    with pytest.raises(NotFound, match="no collection or dataset named 'nope'; collections: laws"):
        create_kb(library, "x", "nope", embedder="none")
    create_kb(library, "laws", "laws", embedder="none")
    with pytest.raises(NotFound, match="'laws/missing.md' not in knowledge base 'laws'"):
        remove_documents(library, "laws", ["laws/missing.md"])
    with pytest.raises(NotFound, match="no document named 'nope.md'"):
        add_documents(library, "laws", ["nope.md"])
    with pytest.raises(NotFound, match="no knowledge base named 'other'; knowledge bases: laws"):
        retrieve(library, "other", "q")
    with pytest.raises(NotFound, match="has no version 7; versions: 1"):
        retrieve(library, "laws@7", "q")


def test_concurrent_updates_and_queries_never_see_a_torn_index(library: Library) -> None:
    create_kb(library, "laws", "laws", embedder="fake-bow")
    other = library.catalog.save(document(SMOKING, collection="other"))
    copy = library.catalog.save(document(SMOKING, collection="copy"))
    errors: list[BaseException] = []
    stop = threading.Event()

    def query() -> None:
        reader = replace(library, cache_size=1)  # another process's Library, in effect
        try:
            while not stop.is_set():
                loaded = reader.load("laws")
                names = {e.document for e in loaded.manifest.documents}
                assert {r["meta"]["document"] for r in loaded.index.rows} == names
                assert loaded.index.lexical.size == loaded.index.size == loaded.record.chunk_count
                hits = retrieve(reader, loaded.record.ref, "控烟 燃气", 5)
                assert hits and {h.document for h in hits} <= names
        except BaseException as e:
            errors.append(e)

    def update(writer: Library, name: str) -> None:
        try:
            for _ in range(2):
                add_documents(writer, "laws", [name])
                remove_documents(writer, "laws", [name])
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=query) for _ in range(2)]
    writers = [
        threading.Thread(target=update, args=(replace(library), d.name)) for d in (other, copy)
    ]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    # Two writers, 4 changes each, none lost: the lock serialised them.
    assert resolve_kb(library.catalog, "laws").version == 9
    assert OSHA.name in {e.document.split("/")[-1] for e in library.load("laws").manifest.documents}


def test_delete_removes_every_version_and_frees_the_name(library: Library) -> None:
    create_kb(library, "gone", "laws", embedder="none")
    add_terms(library, "gone", ["燃气经营者"])
    assert retrieve(library, "gone", "燃气", 1, "bm25")  # loaded: in the Library's cache
    with pytest.raises(ConfigError, match="names one version.*`feilun kb delete gone`"):
        delete_kb(library, "gone@1")
    assert [r.ref for r in delete_kb(library, "gone")] == ["gone@2", "gone@1"]
    assert kb_versions(library.catalog, "gone") == [] and not library._loaded
    with pytest.raises(NotFound, match="no knowledge base named 'gone'"):
        retrieve(library, "gone", "燃气", 1, "bm25")
    create_kb(library, "kept", "laws", embedder="none")
    with pytest.raises(NotFound, match="no knowledge base named 'gone'; knowledge bases: kept"):
        delete_kb(library, "gone")
    assert create_kb(library, "gone", "laws", embedder="none").record.ref == "gone@1"
