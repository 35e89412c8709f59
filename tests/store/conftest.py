"""Store fixtures: every database test runs on SQLite and on the local PostgreSQL.

PostgreSQL comes from `postgres_url` in tests/conftest.py (fresh schema per test); it is
skipped, with the reason, only when no server can be reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database, open_database
from feilun.store.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feilun.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An open, empty (unmigrated) database."""
    database = open_database(database_url)
    yield database
    database.close()


@pytest.fixture
def migrated_db(db: Database) -> Database:
    """An open database at the head revision."""
    upgrade(db)
    return db


@pytest.fixture
def catalog(migrated_db: Database) -> SqlCatalog:
    """A catalog over a migrated database."""
    return SqlCatalog(migrated_db)
