"""Schema migrations of the metadata database (Alembic, run in-process) and SQLite backups.

The Alembic environment lives in `feilun/store/migrations` inside the wheel; no alembic.ini is
needed. A database at a revision this code does not know was made by a newer Feilun and is
never touched.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from feilun.core.errors import WorkspaceError
from feilun.store.database import Database

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "feilun.store:migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """Return the newest schema revision this code knows."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise WorkspaceError("no migrations found in feilun.store", "reinstall feilun")
    return head


def known_revisions() -> list[str]:
    """Return every revision this code knows, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(db: Database) -> str | None:
    """Return the revision the database is at; None when it has no Feilun schema yet."""
    with db.session(is_read_only=True) as session:
        return _current(session.connection())


def _refuse_unknown(db: Database, revision: str | None) -> None:
    if revision is not None and revision not in known_revisions():
        where = db.sqlite_path or db.display_url
        raise WorkspaceError(
            f"the metadata database {where} was created by a newer Feilun (revision "
            f"{revision}; this Feilun knows up to {head_revision()})",
            "upgrade with `pip install -U feilun`",
        )


def check_revision(db: Database) -> None:
    """Raise WorkspaceError unless the database is exactly at the head revision."""
    current, head = current_revision(db), head_revision()
    _refuse_unknown(db, current)
    if current != head:
        where = db.sqlite_path or db.display_url
        raise WorkspaceError(
            f"the metadata database {where} is at schema revision {current or 'none'}, "
            f"this Feilun needs {head}",
            "run `feilun doctor` to migrate it (it backs the database up first)",
        )


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the database up to `revision` in one transaction."""
    with db.begin() as connection:
        before = _current(connection)
        _refuse_unknown(db, before)
        command.upgrade(_config(connection), revision)
        logger.info(
            "migrated %s from %s to %s", db.display_url, before or "base", _current(connection)
        )


def downgrade(db: Database, revision: str) -> None:
    """Migrate the database down to `revision` (`base` removes every table) in one transaction."""
    with db.begin() as connection:
        before = _current(connection)
        _refuse_unknown(db, before)
        command.downgrade(_config(connection), revision)
        logger.info(
            "migrated %s down from %s to %s",
            db.display_url,
            before or "base",
            _current(connection) or "base",
        )


def backup_sqlite(db_path: Path) -> Path:
    """Copy a live SQLite database with the online backup API to `<name>.bak-<UTC time>`."""
    if not db_path.is_file():
        raise WorkspaceError(
            f"cannot back up {db_path}: no such database file",
            "check the workspace path (--workspace or FEILUN_WORKSPACE)",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = db_path.with_name(f"{db_path.name}.bak-{stamp}")
    partial = target.with_name(target.name + ".partial")
    source = sqlite3.connect(db_path)
    try:
        destination = sqlite3.connect(partial)
        try:
            source.backup(destination)
        finally:
            destination.close()
        partial.replace(target)
    except sqlite3.Error as e:
        partial.unlink(missing_ok=True)
        raise WorkspaceError(
            f"backing up {db_path} to {target} failed: {e}",
            "check free disk space and that no other process holds the database, then retry",
        ) from e
    finally:
        source.close()
    logger.info("backed up %s to %s", db_path, target)
    return target
