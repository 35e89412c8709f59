from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from feilun.core.errors import ConfigError
from feilun.core.protocols import Catalog
from feilun.core.records import (
    RECORD_TYPES,
    Adapter,
    Alias,
    BaseModel,
    Dataset,
    Document,
    Example,
    Message,
    Record,
)
from feilun.store.catalog import SqlCatalog
from feilun.store.schema import record_inputs

SHANGHAI = timezone(timedelta(hours=8))


def _input_rows(catalog: SqlCatalog) -> list[tuple[str, str]]:
    with catalog.db.session(is_read_only=True) as session:
        rows = session.execute(sa.select(record_inputs).order_by(record_inputs.c.input_id)).all()
    return [tuple(row) for row in rows]


def test_is_a_catalog(catalog: SqlCatalog) -> None:
    assert isinstance(catalog, Catalog)


def test_round_trip_preserves_every_field(catalog: SqlCatalog) -> None:
    original = Document(
        name="燃气安全手册",
        version=3,
        created_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=SHANGHAI),
        inputs=["src_b", "src_a"],
        meta={"nested": {"list": [1, 2.5, None, True]}, "emoji": "🔥", "big": 2**53 + 1},
        source="/data/手册.pdf",
        media_type="application/pdf",
        language="zh",
        title="Handbook",
        pages=12,
        text='line one\nNUL here:\x00 tab\t quote" end',
        warnings=["page 3 had no text"],
    )
    catalog.save(original)
    [found] = catalog.find("document", "燃气安全手册", 3)
    assert type(found) is Document
    assert found == original
    assert found.model_dump() == original.model_dump()
    assert found.id == original.id
    assert found.content_hash == original.content_hash
    assert found.created_at == original.created_at
    assert found.created_at.utcoffset() == timedelta(hours=8)
    assert found.inputs == ["src_b", "src_a"]  # order kept


@pytest.mark.parametrize("kind", sorted(RECORD_TYPES))
def test_every_record_kind_round_trips(catalog: SqlCatalog, kind: str) -> None:
    record_type = RECORD_TYPES[kind]
    extra = {"source": "gguf", "location": "/m.gguf"} if record_type is BaseModel else {}
    record = record_type(name=f"{kind}-one", inputs=["x"], **extra)
    catalog.save(record)
    assert catalog.find(kind) == [record]
    assert catalog.find(kind)[0].model_dump(mode="json") == record.model_dump(mode="json")


def test_example_messages_round_trip(catalog: SqlCatalog) -> None:
    example = Example(
        name="qa",
        messages=[Message(role="user", content="你好"), Message(role="assistant", content="hi")],
    )
    catalog.save(example)
    [found] = catalog.find("example")
    assert found == example
    assert isinstance(found, Example)
    assert found.messages[0] == Message(role="user", content="你好")


def test_versions_come_newest_first(catalog: SqlCatalog) -> None:
    for version in (2, 1, 3):
        catalog.save(Dataset(name="handbook", version=version, count=version))
    catalog.save(Dataset(name="other", version=1))
    found = catalog.find("dataset", "handbook")
    assert [d.version for d in found] == [3, 2, 1]
    assert [d.count for d in found] == [3, 2, 1]  # type: ignore[attr-defined]
    assert [d.version for d in catalog.find("dataset")][:2] == [3, 2]
    assert len(catalog.find("dataset")) == 4
    [second] = catalog.find("dataset", "handbook", version=2)
    assert second.version == 2
    assert catalog.find("dataset", "handbook", version=9) == []
    assert catalog.find("dataset", "absent") == []
    assert catalog.find("adapter") == []


def test_next_version(catalog: SqlCatalog) -> None:
    assert catalog.next_version("adapter", "lora") == 1
    catalog.save(Adapter(name="lora", version=1))
    catalog.save(Adapter(name="lora", version=4))
    catalog.save(Adapter(name="other", version=9))
    assert catalog.next_version("adapter", "lora") == 5
    assert catalog.next_version("dataset", "lora") == 1


def test_a_taken_version_is_never_overwritten(catalog: SqlCatalog) -> None:
    first = catalog.save(Dataset(name="d", version=1, count=1, inputs=["old_input"]))
    with pytest.raises(ConfigError, match=r"dataset d@1 was saved by someone else meanwhile"):
        catalog.save(Dataset(name="d", version=1, count=2, inputs=["new_input"]))
    assert catalog.find("dataset", "d") == [first]
    assert _input_rows(catalog) == [(first.id, "old_input")]


def test_replace_swaps_a_version_when_asked_and_for_aliases(catalog: SqlCatalog) -> None:
    catalog.save(Dataset(name="d", version=1, count=1, inputs=["old_input"]))
    second = catalog.save(
        Dataset(name="d", version=1, count=2, inputs=["new_input"]), if_taken="replace"
    )
    assert catalog.find("dataset", "d") == [second]
    assert _input_rows(catalog) == [(second.id, "new_input")]
    catalog.save(Alias(name="prod", target="tiny@1"))
    moved = catalog.save(Alias(name="prod", target="tiny@2"))  # an alias is a movable name
    assert catalog.find("alias", "prod") == [moved]


def test_failed_replace_keeps_the_old_record(catalog: SqlCatalog) -> None:
    kept = catalog.save(Dataset(name="d", version=1, count=1))
    other = catalog.save(Dataset(name="e", version=1))
    # Same name and version as `kept` but the id of `other`: the delete runs, the insert fails.
    clash = Dataset(id=other.id, name="d", version=1, count=2)
    for if_taken in ("replace", "fail", "next"):
        with pytest.raises(sa.exc.IntegrityError):  # an id saved twice is a bug, not a clash
            catalog.save(clash, if_taken=if_taken)  # type: ignore[arg-type]
    assert catalog.find("dataset", "d") == [kept]


def test_remove_deletes_every_version_and_their_inputs(catalog: SqlCatalog) -> None:
    for version in (1, 2, 3):
        catalog.save(Document(name="gone", version=version, inputs=[f"in{version}"]))
    kept = catalog.save(Document(name="kept", inputs=["k"]))
    catalog.save(Dataset(name="gone"))
    assert catalog.remove("document", "gone") == 3
    assert catalog.find("document") == [kept]
    assert len(catalog.find("dataset", "gone")) == 1
    assert _input_rows(catalog) == [(kept.id, "k")]  # cascaded
    assert catalog.remove("document", "gone") == 0


def test_lineage_is_transitive_nearest_first(catalog: SqlCatalog) -> None:
    doc_a = catalog.save(Document(name="a"))
    doc_b = catalog.save(Document(name="b"))
    dataset = catalog.save(Dataset(name="ds", inputs=[doc_a.id, doc_b.id, doc_a.id]))
    adapter = catalog.save(Adapter(name="lora", inputs=[dataset.id, "mdl_external", doc_a.id]))
    lineage = catalog.lineage(adapter.id)
    assert lineage[:3] == sorted([dataset.id, "mdl_external", doc_a.id])
    assert lineage[3:] == [doc_b.id]
    assert catalog.lineage(dataset.id) == sorted([doc_a.id, doc_b.id])
    assert catalog.lineage(doc_a.id) == []
    assert catalog.lineage("never_saved") == []


def test_lineage_survives_a_cycle(catalog: SqlCatalog) -> None:
    catalog.save(Document(id="doc_1", name="one", inputs=["doc_2"]))
    catalog.save(Document(id="doc_2", name="two", inputs=["doc_1", "doc_3"]))
    assert catalog.lineage("doc_1") == ["doc_2", "doc_3"]


def test_unknown_kind_is_refused_with_the_known_ones(catalog: SqlCatalog) -> None:
    with pytest.raises(ConfigError, match="unknown record kind 'widget'") as info:
        catalog.find("widget")
    assert "document" in str(info.value)
    with pytest.raises(ConfigError, match="unknown record kind 'record'"):
        catalog.save(Record(name="bare"))


def test_subclass_reusing_a_kind_is_refused(catalog: SqlCatalog) -> None:
    class MyDocument(Document):
        extra_field: str = ""

    with pytest.raises(ConfigError, match="registered to Document"):
        catalog.save(MyDocument(name="x"))
    assert catalog.find("document") == []


def test_latest_gives_the_highest_version_of_each_name_ordered_by_name(
    catalog: SqlCatalog,
) -> None:
    for name, version in [("c/b.txt", 1), ("c/b.txt", 3), ("c/b.txt", 2), ("c/a.txt", 1)]:
        catalog.save(Document(name=name, version=version, collection="c", pages=version))
    catalog.save(Document(name="d/a.txt", collection="d"))
    catalog.save(Dataset(name="c/a.txt", version=7))
    found = catalog.latest("document", name_prefix="c/")
    assert [(d.name, d.version, d.pages) for d in found] == [  # type: ignore[attr-defined]
        ("c/a.txt", 1, 1),
        ("c/b.txt", 3, 3),
    ]
    assert [d.name for d in catalog.latest("document")] == ["c/a.txt", "c/b.txt", "d/a.txt"]
    assert catalog.latest("quarantine", name_prefix="c/") == []


def test_latest_name_prefix_is_literal_and_case_sensitive(catalog: SqlCatalog) -> None:
    for name in ["a_b/x", "axb/x", "a%/x", "A_B/x", "a_b", "燃气/手册.pdf", "燃气x/y"]:
        catalog.save(Document(name=name))

    def names(prefix: str) -> list[str]:
        return [d.name for d in catalog.latest("document", name_prefix=prefix)]

    assert names("a_b/") == ["a_b/x"]  # `_` is not a wildcard, and `A_B/` is another name
    assert names("a%/") == ["a%/x"]
    assert names("燃气/") == ["燃气/手册.pdf"]
    assert names("zzz") == []


def test_latest_filters_fields_on_the_latest_version(catalog: SqlCatalog) -> None:
    catalog.save(Document(name="moved", version=1, collection="old"))
    catalog.save(Document(name="moved", version=2, collection="new"))
    catalog.save(Document(name="stays", collection="old", language="zh"))
    assert [d.name for d in catalog.latest("document", fields={"collection": "old"})] == ["stays"]
    assert [d.version for d in catalog.latest("document", fields={"collection": "new"})] == [2]
    both = {"collection": "old", "language": "zh"}
    assert [d.name for d in catalog.latest("document", fields=both)] == ["stays"]
    assert catalog.latest("document", fields={"collection": "old", "language": "en"}) == []


def test_distinct_field_values(catalog: SqlCatalog) -> None:
    for name, collection in [("a", "zeta"), ("b", "alpha"), ("c", "zeta"), ("d", "")]:
        catalog.save(Document(name=name, collection=collection))
    catalog.save(Dataset(name="x", meta={"collection": "not-a-field"}))
    assert catalog.distinct("document", "collection") == ["alpha", "zeta"]
    assert catalog.distinct("quarantine", "collection") == []
