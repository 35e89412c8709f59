"""The metadata database: one SQLAlchemy engine for SQLite (embedded) or PostgreSQL (at scale).

Every logical change is one transaction (`Database.session()`). SQLite runs in WAL mode with
foreign keys on and `synchronous=NORMAL` by default: a commit survives a killed process, and
`FULL` (one fsync per commit) makes it survive a power cut too. A locked file or an
unreachable server surfaces as a `FeilunError` that names the database and the fix.

On an event loop (`core.blocking.run_nonblocking`) a PostgreSQL transaction, an fsynced
commit, or a SQLite write lock another writer holds would block: they raise `WouldBlock`, so
the work moves to a thread; an uncontended SQLite write with `synchronous=NORMAL` runs inline.

`Database.insert_rows` is the write path of every served request (usage and trace): on SQLite
it goes straight through the driver with statements compiled once, at under 60% of the cost
of a Core transaction; the same begin rules, type conversions and errors apply.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

from feilun.core.blocking import WouldBlock, ensure_may_block, may_block
from feilun.core.errors import BackendUnavailable, ConfigError, WorkspaceError

logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_CONNECT_TIMEOUT_S = 10
# Execution option read by the SQLite "begin" hook: DEFERRED for readers, IMMEDIATE for writers,
# so a writer takes the write lock up front (waiting busy_timeout) instead of failing on upgrade.
_BEGIN_OPTION = "feilun_sqlite_begin"


@dataclass(frozen=True)
class _Insert:
    """One INSERT compiled for the driver: its SQL, parameter order and type conversions."""

    sql: str
    keys: tuple[str, ...]
    converters: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def compile(cls, table: sa.Table, keys: tuple[str, ...], engine: Engine) -> _Insert:
        """Compile `INSERT INTO table (keys)` with the dialect's own bind conversions."""
        compiled = sa.insert(table).compile(dialect=engine.dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        converters = tuple(table.c[key].type.bind_processor(engine.dialect) for key in order)
        return cls(compiled.string, order, converters)

    def parameters(self, row: Mapping[str, Any]) -> list[Any]:
        """The row's values in statement order, converted as SQLAlchemy would."""
        return [
            row[key] if convert is None else convert(row[key])
            for key, convert in zip(self.keys, self.converters, strict=True)
        ]


@dataclass(frozen=True)
class Database:
    """An open metadata database: the engine, its session factory and where it lives."""

    url: URL
    engine: Engine
    sessionmaker: sessionmaker[Session]
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    sqlite_synchronous: str = "normal"
    _inserts: dict[tuple[sa.Table, tuple[str, ...]], _Insert] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @property
    def sqlite_path(self) -> Path | None:
        """The database file for a file-backed SQLite database, else None."""
        if self.dialect != "sqlite" or not self.url.database or self.url.database == ":memory:":
            return None
        return Path(self.url.database)

    @property
    def display_url(self) -> str:
        """The URL with any password masked, safe for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self, *, is_read_only: bool = False) -> Iterator[Session]:
        """Yield a session in one transaction: committed at the end, rolled back if it raises."""
        self._ensure_may_block()
        bind = self.engine
        if is_read_only:
            bind = bind.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
        with self.sessionmaker(bind=bind) as session, session.begin():
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Yield a Core connection inside one write transaction."""
        self._ensure_may_block()
        with self.engine.begin() as connection:
            yield connection

    def insert_rows(self, rows: Sequence[tuple[sa.Table, Mapping[str, Any]]]) -> None:
        """Insert each `(table, row)` in one write transaction (IntegrityError on a duplicate)."""
        if self.dialect != "sqlite":
            with self.begin() as connection:
                for table, row in rows:
                    connection.execute(sa.insert(table), dict(row))
            return
        pooled = self.engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            self._insert_with_driver(driver, rows)
        finally:
            pooled.close()

    def _insert_with_driver(
        self, driver: sqlite3.Connection, rows: Sequence[tuple[sa.Table, Mapping[str, Any]]]
    ) -> None:
        statements = [(self._insert_of(table, tuple(row)), row) for table, row in rows]
        if not may_block():
            _begin_without_waiting(driver, self.busy_timeout_ms, self.sqlite_synchronous)
        else:
            try:
                driver.execute("BEGIN IMMEDIATE")  # waits up to the busy timeout
            except sqlite3.OperationalError as e:
                raise (_locked(self) if "database is locked" in str(e) else e) from e
        sql = ""
        try:
            for insert, row in statements:
                sql = insert.sql
                driver.execute(sql, insert.parameters(row))
            driver.execute("COMMIT")
        except BaseException as e:
            if driver.in_transaction:
                driver.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError):  # as Core raises it
                raise sa.exc.IntegrityError(sql, None, e) from e
            raise

    def _insert_of(self, table: sa.Table, keys: tuple[str, ...]) -> _Insert:
        insert = self._inserts.get((table, keys))
        if insert is None:
            insert = self._inserts[(table, keys)] = _Insert.compile(table, keys, self.engine)
        return insert

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _ensure_may_block(self) -> None:
        if self.dialect != "sqlite":
            ensure_may_block()  # a round trip to the server


def open_database(
    url: str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    sqlite_synchronous: Literal["normal", "full"] = "normal",
) -> Database:
    """Open the metadata database at `url` (`sqlite:////abs/feilun.db` or `postgresql://…`)."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, busy_timeout_ms, sqlite_synchronous)
    else:
        engine = _postgres_engine(parsed)
    database = Database(
        url=parsed,
        engine=engine,
        sessionmaker=sessionmaker(engine, expire_on_commit=False),
        busy_timeout_ms=busy_timeout_ms,
        sqlite_synchronous=sqlite_synchronous,
    )
    event.listen(engine, "handle_error", _error_translator(database))
    logger.debug("opened metadata database %s", database.display_url)
    return database


def dump_json(value: Any) -> str:
    """JSON columns' text, by orjson (several times faster than `json` on every write)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer over 64 bits
        return json.dumps(value)


def _parse_url(url: str) -> URL:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as e:
        raise ConfigError(
            f"database_url {url!r} is not a database URL",
            "use sqlite:////absolute/path/feilun.db or postgresql://user:password@host:5432/db",
        ) from e
    if parsed.drivername in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        return parsed
    raise ConfigError(
        f"database_url {parsed.render_as_string(hide_password=True)!r} uses the unsupported "
        f"driver {parsed.drivername!r}; supported: sqlite, postgresql (psycopg)",
        "use sqlite:////absolute/path/feilun.db or postgresql://user:password@host:5432/db",
    )


def _sqlite_engine(url: URL, busy_timeout_ms: int, synchronous: str) -> Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise WorkspaceError(
                f"the folder {folder} of the metadata database {url.database} does not exist",
                "create the workspace with `feilun init`, or fix database_url",
            )
    engine = sa.create_engine(url, json_serializer=dump_json, pool_use_lifo=True)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours (see _begin) and
        # DDL is transactional; pragmas must run outside a transaction anyway.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL syncs at checkpoints, not commits: a commit is in the WAL
            # file (the OS's page cache) before it returns, so a killed process loses none.
            cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        if mode == "IMMEDIATE" and not may_block():
            driver = connection.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            _begin_without_waiting(driver, busy_timeout_ms, synchronous)
        else:
            connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _begin_without_waiting(
    driver: sqlite3.Connection, busy_timeout_ms: int, synchronous: str
) -> None:
    """Take the write lock now or raise WouldBlock: never wait for it on an event loop."""
    if synchronous != "normal":
        raise WouldBlock  # every commit fsyncs
    driver.execute("PRAGMA busy_timeout = 0")
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        raise WouldBlock from e  # another writer holds the lock
    finally:
        driver.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


def _postgres_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
    try:
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args=connect_args, json_serializer=dump_json
        )
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"database_url {url.render_as_string(hide_password=True)!r} needs the PostgreSQL "
            f"driver psycopg, which is not installed",
            "pip install 'feilun[postgres]'",
        ) from e


def _locked(database: Database) -> WorkspaceError:
    where = database.sqlite_path or database.display_url
    return WorkspaceError(
        f"the metadata database {where} is locked: another feilun process holds it",
        "wait for that process to finish or stop it, then retry",
    )


def _error_translator(database: Database) -> Any:
    """Build a `handle_error` hook turning lock and connection failures into FeilunErrors."""

    def translate(context: ExceptionContext) -> None:
        error = context.sqlalchemy_exception
        if not isinstance(error, sa.exc.OperationalError):
            return
        if database.dialect == "sqlite" and "database is locked" in str(context.original_exception):
            raise _locked(database) from error
        if database.dialect == "postgresql" and (
            context.connection is None or context.is_disconnect
        ):
            raise BackendUnavailable(
                f"cannot reach the PostgreSQL database {database.display_url}: "
                f"{str(context.original_exception).strip()}",
                "start the server or fix database_url (host, port, user, password, database name)",
            ) from error

    return translate
