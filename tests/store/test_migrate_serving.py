"""Migration 0002 (serving tables) up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from feilun.store.database import Database
from feilun.store.migrate import current_revision, downgrade, known_revisions, upgrade
from feilun.store.schema import prices, usage

SERVING = {"tenants", "api_keys", "quotas", "prices", "usage", "traces"}
BASE = {"records", "record_inputs"}


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def _indexes(db: Database, table: str) -> dict[str, list[str]]:
    with db.engine.connect() as conn:
        return {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes(table)}


def test_0002_follows_0001() -> None:
    assert known_revisions()[:2] == ["0001", "0002"]


def test_up_down_up(db: Database) -> None:
    upgrade(db, "0001")
    assert _tables(db) == BASE
    upgrade(db, "0002")
    assert current_revision(db) == "0002"
    assert _tables(db) == BASE | SERVING
    assert _indexes(db, "usage")["ix_usage_tenant_id_day"] == ["tenant_id", "day"]
    assert _indexes(db, "traces")["ix_traces_tenant_id_created_at"] == ["tenant_id", "created_at"]
    downgrade(db, "0001")
    assert current_revision(db) == "0001"
    assert _tables(db) == BASE
    upgrade(db, "0002")
    assert _tables(db) == BASE | SERVING


def test_money_round_trips_exactly(migrated_db: Database) -> None:
    row = {
        "id": "use_1",
        "trace_id": "trc_1",
        "tenant_id": "tnt_1",
        "key_prefix": "fl-00000000",
        "model": "m",
        "adapter": None,
        "endpoint": "chat.completions",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "cost": Decimal("123456.000000000001"),
        "usage_source": "tokenizer",
        "status": "ok",
        "day": "2026-11-01",
        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
    }
    with migrated_db.session() as session:
        session.execute(sa.insert(usage).values(**row))
        session.execute(
            sa.insert(prices).values(
                model="m", input_per_1k=Decimal("0.00000001"), output_per_1k=Decimal("1.5")
            )
        )
    with migrated_db.session(is_read_only=True) as session:
        price = session.execute(sa.select(prices)).one()
        cost = session.execute(sa.select(usage.c.cost)).scalar_one()
    assert price.input_per_1k == Decimal("0.00000001")
    assert price.output_per_1k == Decimal("1.5")
    assert isinstance(cost, Decimal)
    # SQLite keeps NUMERIC as a float: 18 significant digits are not kept there, 12 are.
    if migrated_db.dialect == "postgresql":
        assert cost == Decimal("123456.000000000001")
    else:
        assert abs(cost - Decimal("123456.000000000001")) < Decimal("1e-9")


def test_unique_trace_and_key_prefix(migrated_db: Database) -> None:
    with migrated_db.engine.connect() as conn:
        inspector = sa.inspect(conn)
        uniques = {
            table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            for table in ("usage", "api_keys", "tenants")
        }
    assert ("trace_id",) in uniques["usage"]
    assert ("prefix",) in uniques["api_keys"]
    assert ("name",) in uniques["tenants"]
