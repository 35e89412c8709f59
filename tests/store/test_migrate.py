from __future__ import annotations

import re
import sqlite3
from importlib.resources import files
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from feilun.core.errors import WorkspaceError
from feilun.core.records import Document
from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database, open_database
from feilun.store.migrate import (
    backup_sqlite,
    check_revision,
    current_revision,
    downgrade,
    head_revision,
    known_revisions,
    upgrade,
)
from feilun.store.schema import metadata

TABLES = {
    *("records", "record_inputs", "tenants", "api_keys", "quotas", "prices", "usage", "traces"),
    *("feedback", "audit_events", "audit_checkpoints", "flywheel_turns", "deliveries"),
}


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def test_migration_files_ship_inside_the_package() -> None:
    folder = files("feilun.store") / "migrations"
    assert (folder / "script.py.mako").is_file()
    assert (folder / "env.py").is_file()
    assert (folder / "versions" / "0001_initial.py").is_file()
    assert head_revision() == "0004"
    assert known_revisions() == ["0001", "0002", "0003", "0004"]


def test_up_down_up(db: Database) -> None:
    assert current_revision(db) is None
    assert _tables(db) == set()
    upgrade(db)
    assert current_revision(db) == head_revision()
    assert _tables(db) == TABLES
    check_revision(db)
    downgrade(db, "base")
    assert current_revision(db) is None
    assert _tables(db) == set()
    upgrade(db)
    assert _tables(db) == TABLES
    SqlCatalog(db).save(Document(name="after-reupgrade"))
    assert [d.name for d in SqlCatalog(db).find("document")] == ["after-reupgrade"]


def test_migrated_schema_matches_schema_module(migrated_db: Database) -> None:
    with migrated_db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_check_revision_on_empty_database_says_run_doctor(db: Database) -> None:
    with pytest.raises(WorkspaceError, match="revision none") as info:
        check_revision(db)
    assert "feilun doctor" in str(info.value)


def _stamp(db: Database, revision: str) -> None:
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_unknown_revision_is_from_a_newer_feilun(migrated_db: Database) -> None:
    _stamp(migrated_db, "9999_future")
    with pytest.raises(WorkspaceError, match="newer Feilun") as info:
        check_revision(migrated_db)
    assert "9999_future" in str(info.value)
    assert "pip install -U feilun" in str(info.value)
    with pytest.raises(WorkspaceError, match="newer Feilun"):
        upgrade(migrated_db)
    with pytest.raises(WorkspaceError, match="newer Feilun"):
        downgrade(migrated_db, "base")
    assert current_revision(migrated_db) == "9999_future"  # left untouched


def test_backup_sqlite_is_a_readable_copy(tmp_path: Path) -> None:
    path = tmp_path / "feilun.db"
    db = open_database(f"sqlite:///{path}")
    try:
        upgrade(db)
        saved = SqlCatalog(db).save(Document(name="kept", text="数据飞轮"))
        backup = backup_sqlite(path)  # while the source is open, in WAL mode
    finally:
        db.close()
    assert backup.parent == tmp_path
    assert re.fullmatch(r"feilun\.db\.bak-\d{8}T\d{12}Z", backup.name)
    assert not list(tmp_path.glob("*.partial"))
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy = open_database(f"sqlite:///{backup}")
    try:
        check_revision(copy)
        assert SqlCatalog(copy).find("document") == [saved]
    finally:
        copy.close()


def test_backup_of_missing_file_is_a_workspace_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no such database file"):
        backup_sqlite(tmp_path / "absent.db")
    assert list(tmp_path.iterdir()) == []
