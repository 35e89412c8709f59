"""Knowledge base vectors in PostgreSQL with pgvector: the scale-out dense index.

Each KB version gets one table (`kb_vectors_<record id>`: chunk position, chunk id,
`embedding vector(D)`), filled in bulk and then given an HNSW index over cosine distance; top-k
is `ORDER BY embedding <=> query LIMIT k`. A version never changes, so its table is written
once, in one transaction, before the version is published (readers never see a half-filled
one), and dropped when the KB is deleted. The embedded in-process index stays the default;
`vector_store_url` selects this one. The database needs the `vector` extension installed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ClauseElement

from feilun.core.errors import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)

INSERT_BATCH = 1000  # rows per INSERT … VALUES statement
INSTALL_HINT = (
    "install pgvector on the PostgreSQL server (e.g. `apt install postgresql-15-pgvector`), "
    "then run `CREATE EXTENSION vector;` in the database as a superuser; or unset "
    "vector_store_url to keep the embedded index"
)


class Vector(sa.types.UserDefinedType[Any]):
    """pgvector's `vector(D)`; binds a float sequence as its text form `[1.0,2.0,…]`."""

    cache_ok = True

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension

    def get_col_spec(self, **_: Any) -> str:
        """The column type in DDL."""
        return f"vector({self.dimension})"

    def bind_processor(self, dialect: Any) -> Any:
        """Floats → pgvector's text input."""
        return lambda value: None if value is None else vector_literal(value)

    def bind_expression(self, bindvalue: Any) -> Any:
        """A bound vector is cast, so `<=>` knows its type."""
        return sa.cast(bindvalue, self)


def vector_literal(values: Sequence[float] | np.ndarray) -> str:
    """The text form pgvector reads: `[0.1,-0.2,…]` (the shortest float32 repr)."""
    return "[" + ",".join(map(str, np.asarray(values, dtype=np.float32))) + "]"


def vectors_table(name: str, dimension: int) -> sa.Table:
    """The table of one KB version, as SQLAlchemy Core sees it."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("chunk_id", sa.Text, nullable=False),
        sa.Column("embedding", Vector(dimension), nullable=False),
    )


def hnsw_index(table: sa.Table) -> sa.Index:
    """The HNSW index over cosine distance that `<=>` top-k uses."""
    return sa.Index(
        f"{table.name}_hnsw",
        table.c.embedding,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )


def top_k_query(table: sa.Table, query: np.ndarray, k: int, allowed: np.ndarray | None) -> Any:
    """Positions and cosine similarities of the `k` nearest chunks (only `allowed` ones)."""
    distance = table.c.embedding.op("<=>", return_type=sa.Float)(
        sa.bindparam("query", [float(v) for v in query], type_=table.c.embedding.type)
    )
    statement = sa.select(table.c.position, (1 - distance).label("score"))
    if allowed is not None:
        positions = sa.bindparam("allowed", allowed.tolist(), type_=postgresql.ARRAY(sa.Integer))
        statement = statement.where(table.c.position == sa.any_(positions))
    return statement.order_by(distance).limit(k)  # by distance alone: what HNSW can serve


def drop_table(name: str) -> sa.schema.DropTable:
    """`DROP TABLE IF EXISTS` of a KB version's table (its index goes with it)."""
    return sa.schema.DropTable(sa.Table(name, sa.MetaData()), if_exists=True)


def compile_sql(statement: ClauseElement) -> str:
    """A statement's SQL as PostgreSQL receives it (what the tests assert)."""
    return str(statement.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]


CREATE_EXTENSION = sa.text("CREATE EXTENSION IF NOT EXISTS vector")
HAS_EXTENSION = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
TABLE_EXISTS = sa.text("SELECT to_regclass(:name) IS NOT NULL")
EXACT_SEARCH = sa.text("SET LOCAL enable_indexscan = off")
LOCK_TABLE_NAME = sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))")


class PgVectorStore:
    """KB vectors in a PostgreSQL database with the pgvector extension."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._is_ready = False

    @classmethod
    def open(cls, url: str) -> PgVectorStore:
        """The store at `url` (`postgresql://user@host:5432/db`)."""
        from feilun.store.database import open_database

        if not url.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")):
            raise ConfigError(
                f"vector_store_url {url!r} is not a PostgreSQL URL",
                "use postgresql://user:password@host:5432/db (with pgvector), or leave it empty "
                "for the embedded index",
            )
        return cls(open_database(url).engine)

    def write(self, table: str, chunk_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Create and fill the table of a KB version, unless it exists (one transaction)."""
        with self.engine.begin() as connection:
            self._check_extension(connection)
            connection.execute(LOCK_TABLE_NAME, {"name": table})  # one writer per table
            if connection.execute(TABLE_EXISTS, {"name": table}).scalar_one():
                return
            columns = vectors_table(table, int(vectors.shape[1]))
            columns.create(connection)
            rows = [
                {"position": n, "chunk_id": chunk_id, "embedding": vector}
                for n, (chunk_id, vector) in enumerate(zip(chunk_ids, vectors, strict=True))
            ]
            for start in range(0, len(rows), INSERT_BATCH):
                connection.execute(columns.insert(), rows[start : start + INSERT_BATCH])
            hnsw_index(columns).create(connection)  # after the rows: one build, not N inserts
        logger.info("pgvector: wrote %d vectors to %s", len(rows), table)

    def search(
        self, table: str, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk positions, cosine similarities) of the `k` nearest chunks, nearest first."""
        allowed = None if mask is None else np.flatnonzero(mask)
        statement = top_k_query(vectors_table(table, int(query.shape[0])), query, k, allowed)
        with self.engine.begin() as connection:
            if allowed is not None:
                # HNSW filters after its candidate list (ef_search) and may return fewer than
                # k: a filtered query reads the allowed rows (primary key) and sorts them.
                connection.execute(EXACT_SEARCH)
            rows = connection.execute(statement).all()
        positions = np.array([row.position for row in rows], dtype=np.int64)
        return positions, np.array([row.score for row in rows], dtype=np.float32)

    def drop(self, table: str) -> None:
        """Drop the table of a KB version (nothing when there is none)."""
        with self.engine.begin() as connection:
            connection.execute(drop_table(table))

    def _check_extension(self, connection: Connection) -> None:
        if self._is_ready:
            return
        if connection.execute(HAS_EXTENSION).scalar_one_or_none() is None:
            try:
                with connection.begin_nested():
                    connection.execute(CREATE_EXTENSION)
            except sa.exc.DBAPIError as e:
                raise BackendUnavailable(
                    f"the pgvector extension is not available in "
                    f"{self.engine.url.render_as_string(hide_password=True)}: "
                    f"{' '.join(str(e.orig).split())}",
                    INSTALL_HINT,
                ) from e
        self._is_ready = True
