"""Two writers saving the same next version at once, on SQLite and PostgreSQL.

Both computed the same `next_version` before either saved: the loser must get a clear error,
or the version after when it asked for "next", and never overwrite the winner's record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from feilun.core.errors import ConfigError
from feilun.core.records import Dataset
from feilun.store.catalog import IfTaken, SqlCatalog

WRITERS = 2


def race(catalog: SqlCatalog, if_taken: IfTaken) -> tuple[list[Dataset], list[Exception]]:
    """Each writer picks the next version, waits for the others, then saves its dataset."""
    barrier = threading.Barrier(WRITERS, timeout=30)
    saved: list[Dataset] = []
    failed: list[Exception] = []

    def write(count: int) -> None:
        version = catalog.next_version("dataset", "d")
        barrier.wait()  # every writer holds the same version before any saves
        try:
            record = Dataset(name="d", version=version, count=count, inputs=[f"in{count}"])
            saved.append(catalog.save(record, if_taken=if_taken))  # type: ignore[arg-type]
        except ConfigError as e:
            failed.append(e)

    run_all([lambda n=n: write(n) for n in range(WRITERS)])
    return saved, failed


def run_all(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def test_the_loser_takes_the_next_version(catalog: SqlCatalog) -> None:
    saved, failed = race(catalog, "next")
    assert failed == []
    assert sorted(r.version for r in saved) == [1, 2]
    stored = catalog.find("dataset", "d")
    assert sorted((r.version, r.count) for r in stored) == sorted(
        (r.version, r.count) for r in saved
    )  # both writers' data kept, each under the version save returned
    assert {r.count for r in stored} == set(range(WRITERS))
    for record in stored:
        assert catalog.lineage(record.id) == [f"in{record.count}"]


def test_the_loser_is_told_by_default(catalog: SqlCatalog) -> None:
    saved, failed = race(catalog, "fail")
    assert len(saved) == 1 and len(failed) == 1
    assert "dataset d@1 was saved by someone else meanwhile" in str(failed[0])
    assert catalog.find("dataset", "d") == saved  # the winner's record, untouched


def test_a_late_save_of_a_taken_version(catalog: SqlCatalog) -> None:
    first = catalog.save(Dataset(name="d", version=1, count=1))
    late = Dataset(name="d", version=1, count=2)
    with pytest.raises(ConfigError, match="d@1 was saved by someone else"):
        catalog.save(late)
    assert catalog.find("dataset", "d") == [first]
    second = catalog.save(late, if_taken="next")
    assert (second.version, second.id, second.count) == (2, late.id, 2)
    assert catalog.find("dataset", "d") == [second, first]
