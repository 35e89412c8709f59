"""Turn rows on SQLite and PostgreSQL: numbering, state round trips, who may resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feilun.app.flywheel.turns import claim, create_turn, list_turns, save, unfinished_turn
from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import utc_now
from feilun.store.database import Database, open_database
from feilun.store.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'feilun.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    database = open_database(url)
    upgrade(database)
    yield database
    database.close()


def test_turns_are_numbered_per_name_and_keep_their_state(db: Database) -> None:
    first = create_turn(db, "handbook", {"name": "handbook"})
    with pytest.raises(ConfigError, match="is running"):  # this process owns it
        create_turn(db, "handbook", {})
    with pytest.raises(ConfigError, match="is running in process"):
        claim(db, first)
    first.state["train"] = {"done": True, "candidate": "tiny:handbook@1", "rows": [1, "二"]}
    save(db, first, step="evaluate")

    first.state["owner"] = {"pid": 0, "host": first.state["owner"]["host"]}  # its process died
    save(db, first)
    with pytest.raises(ConfigError, match="was interrupted"):
        create_turn(db, "handbook", {})
    resumed = claim(db, unfinished_turn(db, "handbook"))
    assert resumed.outputs("train")["rows"] == [1, "二"] and resumed.step == "evaluate"

    save(db, resumed, status="rejected", finished_at=utc_now())
    with pytest.raises(NotFound, match="the last one rejected"):
        unfinished_turn(db, "handbook")
    second, other = create_turn(db, "handbook", {}), create_turn(db, "faq", {})
    assert (second.number, other.number) == (2, 1)
    assert [(t.name, t.number) for t in list_turns(db)] == [
        ("handbook", 1),
        ("handbook", 2),
        ("faq", 1),
    ]
