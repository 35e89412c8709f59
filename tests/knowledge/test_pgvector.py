"""The pgvector backend: the SQL it issues, its wiring into knowledge bases, and PostgreSQL.

The statements are compiled for PostgreSQL and compared with what pgvector's documentation
prescribes. Against the local server (`postgres_url`, tests/conftest.py) runs whatever needs
no extension; the round trip runs only where `vector` is in pg_available_extensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from feilun.core.errors import BackendUnavailable, ConfigError
from feilun.knowledge.bases import add_terms, create_kb, delete_kb
from feilun.knowledge.fusion import top_k
from feilun.knowledge.library import Library, open_vector_store, vector_table
from feilun.knowledge.pgvector import (
    CREATE_EXTENSION,
    EXACT_SEARCH,
    PgVectorStore,
    Vector,
    compile_sql,
    drop_table,
    hnsw_index,
    top_k_query,
    vector_literal,
    vectors_table,
)
from feilun.knowledge.retrieval import retrieve

TABLE = "kb_vectors_idx_0abc"


def _flat(sql: str) -> str:
    return " ".join(sql.split())


def test_the_statements_are_pgvector_sql() -> None:
    table = vectors_table(TABLE, 384)
    assert compile_sql(CREATE_EXTENSION) == "CREATE EXTENSION IF NOT EXISTS vector"
    assert _flat(compile_sql(CreateTable(table))) == (
        f"CREATE TABLE {TABLE} ( position INTEGER NOT NULL, chunk_id TEXT NOT NULL, "
        "embedding vector(384) NOT NULL, PRIMARY KEY (position) )"
    )
    assert compile_sql(CreateIndex(hnsw_index(table))) == (
        f"CREATE INDEX {TABLE}_hnsw ON {TABLE} USING hnsw (embedding vector_cosine_ops)"
    )
    assert _flat(compile_sql(table.insert())) == (
        f"INSERT INTO {TABLE} (position, chunk_id, embedding) VALUES (%(position)s::INTEGER, "
        "%(chunk_id)s::VARCHAR, CAST(%(embedding)s AS vector(384)))"
    )
    query = np.zeros(384, dtype=np.float32)
    nearest = f"{TABLE}.embedding <=> CAST(%(query)s AS vector(384))"
    assert _flat(compile_sql(top_k_query(table, query, 5, None))) == (
        f"SELECT {TABLE}.position, %(param_1)s::INTEGER - ({nearest}) AS score FROM {TABLE} "
        f"ORDER BY {nearest} LIMIT %(param_2)s::INTEGER"
    )
    filtered = _flat(compile_sql(top_k_query(table, query, 5, np.array([2, 7]))))
    assert f"WHERE {TABLE}.position = ANY (%(allowed)s::INTEGER[]) ORDER BY {nearest}" in filtered
    assert _flat(compile_sql(drop_table(TABLE))) == f"DROP TABLE IF EXISTS {TABLE}"
    assert compile_sql(EXACT_SEARCH) == "SET LOCAL enable_indexscan = off"  # filtered queries


def test_vectors_are_bound_in_pgvectors_text_form() -> None:
    assert vector_literal([0.1, -2e-30, 3]) == "[0.1,-2e-30,3.0]"
    bind = Vector(3).bind_processor(sa.dialects.postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
    assert bind(np.array([0.5, 0.25, -1.0], dtype=np.float32)) == "[0.5,0.25,-1.0]"
    statement = top_k_query(vectors_table(TABLE, 3), np.array([1, 0, 0], np.float32), 2, None)
    params = statement.compile(dialect=sa.dialects.postgresql.psycopg.dialect()).params  # type: ignore[no-untyped-call]
    assert params["query"] == [1.0, 0.0, 0.0] and params["param_2"] == 2


def test_only_a_postgresql_url_selects_pgvector() -> None:
    assert open_vector_store("") is None
    with pytest.raises(ConfigError, match="vector_store_url 'sqlite:///x.db' is not a PostgreSQL"):
        open_vector_store("sqlite:///x.db")


class MemoryStore:
    """The VectorStore Protocol over numpy, recording calls: the wiring, without a server."""

    def __init__(self) -> None:
        self.tables: dict[str, np.ndarray] = {}
        self.searches: list[str] = []

    def write(self, table: str, chunk_ids: Sequence[str], vectors: np.ndarray) -> None:
        assert len(chunk_ids) == len(vectors)
        self.tables.setdefault(table, vectors.copy())

    def search(
        self, table: str, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.searches.append(table)
        scores = self.tables[table] @ query
        best = top_k(scores, k, mask)
        return best, scores[best]

    def drop(self, table: str) -> None:
        del self.tables[table]


def test_a_library_with_a_vector_store_writes_searches_and_drops_there(
    library: Library,
) -> None:
    question = "employer inspection penalties"
    created = create_kb(library, "laws", "laws", embedder="fake-bow").record
    embedded = retrieve(library, "laws", question, 5, "dense")
    store = MemoryStore()
    library.vector_store = store
    library.forget([created])
    served = retrieve(library, "laws", question, 5, "dense")  # written on load, then searched
    assert [h.chunk_id for h in served] == [h.chunk_id for h in embedded]
    assert store.searches == [vector_table(created)] and list(store.tables) == store.searches
    second = add_terms(library, "laws", ["燃气经营者"]).record  # written before it is published
    assert vector_table(second) in store.tables
    assert retrieve(library, "laws", question, 5, "hybrid", filters={"lang": "en"})
    delete_kb(library, "laws")
    assert store.tables == {}


def test_without_the_extension_writing_fails_clearly_and_leaves_nothing(
    postgres_url: str,
) -> None:
    store = PgVectorStore.open(postgres_url)
    with store.engine.connect() as connection:
        available = connection.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        ).first()
    if available is not None:
        pytest.skip("the vector extension is available here: the round trip test covers it")
    vectors = np.eye(3, dtype=np.float32)
    with pytest.raises(BackendUnavailable, match="pgvector extension is not available.*apt"):
        store.write(TABLE, ["a", "b", "c"], vectors)
    with store.engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT to_regclass('{TABLE}')")).scalar() is None
    store.drop(TABLE)  # DROP TABLE IF EXISTS needs no extension, and no table


def _has_pgvector(url: str) -> str | None:
    """Why the round trip cannot run here, or None when it can."""
    store = PgVectorStore.open(url)
    with store.engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        ).first()
    if found is None:
        return (
            "the pgvector extension is not installed on this PostgreSQL server "
            "(no 'vector' in pg_available_extensions); see docs/knowledge.md for the setup"
        )
    return None


def test_round_trip_in_postgresql(postgres_url: str, library: Library) -> None:
    reason = _has_pgvector(postgres_url)
    if reason:
        pytest.skip(reason)
    store = PgVectorStore.open(postgres_url)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.write(TABLE, [f"c{n}" for n in range(50)], vectors)
    store.write(TABLE, [f"c{n}" for n in range(50)], vectors)  # written once
    query = vectors[7]
    positions, scores = store.search(TABLE, query, 5)
    assert positions[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-5)
    exact = top_k(vectors @ query, 5)
    assert set(positions.tolist()) == set(exact.tolist())
    mask = np.zeros(50, dtype=bool)
    mask[[3, 9, 11]] = True
    assert set(store.search(TABLE, query, 5, mask)[0].tolist()) == {3, 9, 11}
    store.drop(TABLE)
    library.vector_store = store
    create_kb(library, "laws", "laws", embedder="fake-bow")
    assert retrieve(library, "laws", "employer inspection penalties", 3, "dense")
    delete_kb(library, "laws")
