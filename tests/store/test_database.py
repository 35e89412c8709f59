from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from feilun.core.errors import BackendUnavailable, ConfigError, WorkspaceError
from feilun.core.records import Document
from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database, open_database
from feilun.store.migrate import check_revision, upgrade
from feilun.store.schema import records


def _pragma(db: Database, name: str) -> object:
    with db.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'feilun.db'}", busy_timeout_ms=1234)
    try:
        assert _pragma(db, "journal_mode") == "wal"
        assert _pragma(db, "synchronous") == 1  # NORMAL: WAL commits survive a killed process
        assert _pragma(db, "foreign_keys") == 1
        assert _pragma(db, "busy_timeout") == 1234
        db.engine.dispose()  # a brand-new connection gets them too
        assert _pragma(db, "busy_timeout") == 1234
        assert _pragma(db, "foreign_keys") == 1
    finally:
        db.close()


def test_sqlite_full_synchronous_on_request(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'feilun.db'}", sqlite_synchronous="full")
    try:
        assert _pragma(db, "synchronous") == 2  # FULL: an fsync per commit
    finally:
        db.close()


def test_sqlite_default_busy_timeout_and_path(tmp_path: Path) -> None:
    path = tmp_path / "feilun.db"
    db = open_database(f"sqlite:///{path}")
    try:
        assert _pragma(db, "busy_timeout") == 5000
        assert db.dialect == "sqlite"
        assert db.sqlite_path == path
    finally:
        db.close()


def test_postgresql_url_is_rewritten_to_psycopg_and_password_masked() -> None:
    db = open_database("postgresql://alice:s3cret@db.example:5432/feilun")
    assert db.url.drivername == "postgresql+psycopg"
    assert db.dialect == "postgresql"
    assert db.sqlite_path is None
    assert "s3cret" not in db.display_url
    assert db.display_url == "postgresql+psycopg://alice:***@db.example:5432/feilun"
    assert open_database("postgres://a@h/d").url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["mysql://u@h/d", "not a url", "postgresql+asyncpg://u@h/d"])
def test_unsupported_or_malformed_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="database_url"):
        open_database(url)


def test_sqlite_in_missing_folder_names_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(WorkspaceError, match="does not exist") as info:
        open_database(f"sqlite:///{missing / 'feilun.db'}")
    assert str(missing) in str(info.value)
    assert "feilun init" in str(info.value)


def test_unreachable_postgresql_is_backend_unavailable_with_masked_url() -> None:
    db = open_database("postgresql://bob:hunter2@127.0.0.1:1/feilun?connect_timeout=2")
    try:
        with pytest.raises(BackendUnavailable) as info:
            upgrade(db)
    finally:
        db.close()
    message = str(info.value)
    assert "hunter2" not in message
    assert "postgresql+psycopg://bob:***@127.0.0.1:1/feilun" in message
    assert "start the server or fix database_url" in message


def test_locked_sqlite_is_a_workspace_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "feilun.db"
    setup = open_database(f"sqlite:///{path}")
    upgrade(setup)
    setup.close()
    holder = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    holder.execute("BEGIN EXCLUSIVE")
    db = open_database(f"sqlite:///{path}", busy_timeout_ms=100)
    try:
        started = time.monotonic()
        with pytest.raises(WorkspaceError, match="is locked") as info:
            SqlCatalog(db).save(Document(name="a"))
        assert time.monotonic() - started < 3
        assert str(path) in str(info.value)
        assert "another feilun process" in str(info.value)
        assert "wait" in (info.value.fix or "")
        holder.rollback()
        SqlCatalog(db).save(Document(name="a"))  # released: the same call now works
        assert len(SqlCatalog(db).find("document")) == 1
    finally:
        holder.close()
        db.close()


def test_lock_taken_before_wal_is_reported_at_connect(tmp_path: Path) -> None:
    # A file still in rollback-journal mode, locked by another program: even the connection
    # pragmas wait, and the failure must still name the file.
    path = tmp_path / "old.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")
    db = open_database(f"sqlite:///{path}", busy_timeout_ms=50)
    try:
        with pytest.raises(WorkspaceError, match="is locked") as info:
            check_revision(db)
        assert str(path) in str(info.value)
    finally:
        holder.close()
        db.close()


def test_session_is_one_transaction(migrated_db: Database) -> None:
    row = {
        "id": "doc_x",
        "kind": "document",
        "name": "x",
        "version": 1,
        "created_at": Document().created_at,
        "content_hash": "sha256:0",
        "data": {},
    }
    with pytest.raises(RuntimeError, match="boom"), migrated_db.session() as session:
        session.execute(sa.insert(records).values(**row))
        raise RuntimeError("boom")
    with migrated_db.session(is_read_only=True) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(records)).scalar() == 0
    with migrated_db.session() as session:
        session.execute(sa.insert(records).values(**row))
    with migrated_db.session(is_read_only=True) as session:
        assert session.execute(sa.select(records.c.id)).scalars().all() == ["doc_x"]


def test_naive_datetimes_are_refused(migrated_db: Database) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), migrated_db.session() as s:
        s.execute(
            sa.insert(records).values(
                id="x",
                kind="document",
                name="x",
                version=1,
                created_at=Document().created_at.replace(tzinfo=None),
                content_hash="",
                data={},
            )
        )
