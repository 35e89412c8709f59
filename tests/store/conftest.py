"""Store fixtures: every database test runs on SQLite and on the local PostgreSQL.

PostgreSQL comes from `postgres_url` in tests/conftest.py (fresh schema per test); it is
skipped, with the reason, only when no server can be reached.
"""

from __future__ import annotations

import pytest

from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database
from feilun.store.migrate import upgrade


@pytest.fixture
def db(bare_db: Database) -> Database:
    """An open, empty (unmigrated) database (see `bare_db` in tests/conftest.py)."""
    return bare_db


@pytest.fixture
def migrated_db(db: Database) -> Database:
    """An open database at the head revision."""
    upgrade(db)
    return db


@pytest.fixture
def catalog(migrated_db: Database) -> SqlCatalog:
    """A catalog over a migrated database."""
    return SqlCatalog(migrated_db)
