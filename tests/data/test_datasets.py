"""Versioned datasets on a real catalog and artifact store."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from feilun.core.errors import ArtifactError, ConfigError, NotFound
from feilun.core.records import Dataset, Document, Record
from feilun.data.datasets import (
    diff_datasets,
    export_dataset,
    item_row,
    list_datasets,
    read_rejected,
    read_rows,
    resolve_dataset,
    save_dataset,
)
from feilun.data.items import Item, Rejection
from feilun.data.pipeline import OperatorReport
from feilun.data.recipes import validate_recipe
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import IfTaken, SqlCatalog
from feilun.store.database import Database, open_database
from feilun.store.migrate import upgrade

ROWS: list[dict[str, object]] = [
    {"id": "a", "text": "第一条 为了加强安全管理", "meta": {"source": "a.md", "row": 1}},
    {"id": "b", "text": "Section 2. Definitions", "meta": {"source": "b.md", "row": 2}},
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[SqlCatalog, ArtifactStore]]:
    db = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(db)
    yield SqlCatalog(db), ArtifactStore(tmp_path / "artifacts")
    db.close()


def canonical_jsonl(rows: list[dict[str, object]]) -> bytes:
    lines = [json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for r in rows]
    return "".join(line + "\n" for line in lines).encode()


def test_save_writes_rows_rejected_and_manifest(store: tuple[SqlCatalog, ArtifactStore]) -> None:
    catalog, artifacts = store
    doc = catalog.save(Document(name="a.md", collection="laws", text="x"))
    recipe = validate_recipe({"description": "dedup", "operators": [{"op": "exact_dedup"}]})
    report = OperatorReport("exact_dedup", "1", 3, 2, {"exact_duplicate": 1}, 0.01)
    dropped = Rejection(
        Item("c", "第一条 为了加强安全管理", {"k": 1}), "exact_dedup", "exact_duplicate: of a"
    )
    saved = save_dataset(
        catalog,
        artifacts,
        "laws-clean",
        ROWS,
        inputs=[doc.id, doc.id],
        recipe=recipe,
        reports=[report],
        rejected=[dropped],
    )
    body = canonical_jsonl(ROWS)
    expected_hash = "sha256:" + hashlib.sha256(body).hexdigest()
    assert (saved.name, saved.version, saved.count) == ("laws-clean", 1, 2)
    assert saved.artifact == saved.content_hash == expected_hash
    assert artifacts.read_bytes(saved.artifact) == body
    assert saved.inputs == [doc.id]
    assert saved.recipe["operators"] == [
        {"op": "exact_dedup", "version": "1", "params": recipe.steps[0].params}
    ]
    assert saved.meta["operators"][0]["removed_by_reason"] == {"exact_duplicate": 1}
    assert saved.meta["removed_by_reason"] == {"exact_duplicate": 1}
    assert saved.meta["rejected_count"] == 1
    assert read_rejected(artifacts, saved) == [dropped]
    assert catalog.lineage(saved.id) == [doc.id]
    assert resolve_dataset(catalog, "laws-clean@1") == saved


def test_saving_again_is_a_new_version_with_the_same_hash(
    store: tuple[SqlCatalog, ArtifactStore],
) -> None:
    catalog, artifacts = store
    first = save_dataset(catalog, artifacts, "d", ROWS)
    second = save_dataset(catalog, artifacts, "d", iter(ROWS))
    third = save_dataset(catalog, artifacts, "d", ROWS[:1])
    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert first.content_hash == second.content_hash != third.content_hash
    assert first.id != second.id
    assert resolve_dataset(catalog, "d@1") == first  # untouched by later saves
    assert resolve_dataset(catalog, "d") == resolve_dataset(catalog, "d@latest") == third
    assert [d.ref for d in list_datasets(catalog)] == ["d@3", "d@2", "d@1"]


def test_resolve_errors_list_what_exists(store: tuple[SqlCatalog, ArtifactStore]) -> None:
    catalog, artifacts = store
    save_dataset(catalog, artifacts, "alpha", ROWS)
    save_dataset(catalog, artifacts, "alpha", ROWS)
    save_dataset(catalog, artifacts, "beta", ROWS)
    with pytest.raises(NotFound, match=r"'alpha' has no version 7; versions: 1, 2"):
        resolve_dataset(catalog, "alpha@7")
    with pytest.raises(NotFound, match=r"no dataset named 'gamma'; datasets: alpha, beta"):
        resolve_dataset(catalog, "gamma")
    with pytest.raises(ConfigError, match="malformed"):
        resolve_dataset(catalog, "alpha@two")


@pytest.mark.parametrize("name", ["", "has space", "a@1", "-lead", "x" * 65])
def test_bad_names_are_refused(store: tuple[SqlCatalog, ArtifactStore], name: str) -> None:
    with pytest.raises(ConfigError, match="is not allowed"):
        save_dataset(*store, name, ROWS)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"id": "x", "text": "t", "meta": {"when": object()}}, "not JSON serializable"),
        ({"id": "x", "text": "t", "meta": {"score": float("nan")}}, "Out of range float"),
    ],
)
def test_rows_that_are_not_json_are_refused(
    store: tuple[SqlCatalog, ArtifactStore], row: dict[str, object], problem: str
) -> None:
    catalog, artifacts = store
    with pytest.raises(
        ConfigError, match=f"row 2 \\(id 'x'\\) cannot be stored as JSON: .*{problem}"
    ):
        save_dataset(catalog, artifacts, "d", [ROWS[0], row])
    assert list_datasets(catalog) == []  # nothing half-saved


def test_read_rows_with_a_limit(store: tuple[SqlCatalog, ArtifactStore]) -> None:
    saved = save_dataset(*store, "d", ROWS)
    assert read_rows(store[1], saved) == ROWS
    assert read_rows(store[1], saved, limit=1) == ROWS[:1]


def test_a_corrupt_artifact_is_detected(store: tuple[SqlCatalog, ArtifactStore]) -> None:
    catalog, artifacts = store
    saved = save_dataset(catalog, artifacts, "d", ROWS)
    path = artifacts.path(saved.artifact)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace("安全".encode(), "危险".encode()))
    with pytest.raises(ArtifactError, match="is corrupt"):
        read_rows(artifacts, saved)


def test_diff(store: tuple[SqlCatalog, ArtifactStore]) -> None:
    catalog, artifacts = store
    old = save_dataset(catalog, artifacts, "d", ROWS)
    changed = {**ROWS[1], "text": "Section 2. Definitions (amended)"}
    new = save_dataset(catalog, artifacts, "d", [changed, {"id": "c", "text": "new"}])
    diff = diff_datasets(artifacts, old, new)
    assert (diff.a, diff.b, diff.count_a, diff.count_b) == ("d@1", "d@2", 2, 2)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (["c"], ["a"], ["b"], 0)
    assert not diff.is_same_content
    same = diff_datasets(artifacts, old, save_dataset(catalog, artifacts, "d", ROWS))
    assert same.is_same_content and same.unchanged == 2 and not same.changed


def test_export_jsonl_and_parquet(store: tuple[SqlCatalog, ArtifactStore], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    catalog, artifacts = store
    saved = save_dataset(catalog, artifacts, "d", ROWS)
    jsonl = export_dataset(artifacts, saved, tmp_path / "out" / "d.jsonl")
    assert jsonl.read_bytes() == canonical_jsonl(ROWS)
    parquet = export_dataset(artifacts, saved, tmp_path / "d.parquet", format="parquet")
    assert pq.read_table(parquet).to_pylist() == ROWS
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_parquet_export_of_mixed_meta_types_keeps_them_as_json(
    store: tuple[SqlCatalog, ArtifactStore], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    rows = [item_row(Item("a", "x", {"page": 1})), item_row(Item("b", "y", {"page": "iv"}))]
    saved = save_dataset(*store, "mixed", rows)
    table = pq.read_table(export_dataset(store[1], saved, tmp_path / "m.parquet", "parquet"))
    assert table.column("meta").to_pylist() == ['{"page":1}', '{"page":"iv"}']
    assert table.column("id").to_pylist() == ["a", "b"]


def test_export_refuses_an_unknown_format(
    store: tuple[SqlCatalog, ArtifactStore], tmp_path: Path
) -> None:
    saved = save_dataset(*store, "d", ROWS)
    with pytest.raises(ConfigError, match="'csv' is not supported"):
        export_dataset(store[1], saved, tmp_path / "d.csv", format="csv")  # type: ignore[arg-type]


class RacingCatalog(SqlCatalog):
    """A catalog where every writer has picked its version before any dataset is saved."""

    def __init__(self, db: Database, writers: int) -> None:
        super().__init__(db)
        self.barrier = threading.Barrier(writers, timeout=30)

    def save(self, record: Record, *, if_taken: IfTaken | None = None) -> Record:
        if record.kind == "dataset":
            self.barrier.wait()  # both writers computed the same next version by now
        return super().save(record, if_taken=if_taken)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_racing_writers_both_succeed_with_the_next_versions(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'feilun.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = open_database(url)
    try:
        upgrade(db)
        catalog = RacingCatalog(db, writers=2)
        artifacts = ArtifactStore(tmp_path / "artifacts")
        rows = {writer: [{"id": writer, "text": f"rows of writer {writer}"}] for writer in "ab"}
        saved: dict[str, Dataset] = {}
        failed: list[BaseException] = []

        def write(writer: str) -> None:
            try:
                saved[writer] = save_dataset(
                    catalog, artifacts, "d", rows[writer], inputs=[f"doc_{writer}"]
                )
            except BaseException as e:  # reported by the asserts below
                failed.append(e)

        threads = [threading.Thread(target=write, args=(writer,)) for writer in rows]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failed == []
        assert sorted(d.version for d in saved.values()) == [1, 2]
        assert saved["a"].content_hash != saved["b"].content_hash
        for writer, dataset in saved.items():  # each version holds its own writer's rows
            stored = resolve_dataset(catalog, dataset.ref)
            assert stored == dataset
            assert read_rows(artifacts, stored) == rows[writer]
            assert catalog.lineage(stored.id) == [f"doc_{writer}"]
    finally:
        db.close()
