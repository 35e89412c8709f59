"""Migration 0003 (feedback, audit chain, flywheel turns) up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from feilun.store.database import Database
from feilun.store.migrate import current_revision, downgrade, known_revisions, upgrade
from feilun.store.schema import audit_events, feedback

FLYWHEEL = {"feedback", "audit_events", "audit_checkpoints", "flywheel_turns"}


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def _feedback_row(row_id: str, client_id: str | None) -> dict[str, object]:
    return {
        "id": row_id,
        "trace_id": "trc_1",
        "tenant_id": "tnt_1",
        "key_prefix": "fl-00000000",
        "client_id": client_id,
        "rating": 1,
        "scale": "thumbs",
        "corrected_answer": None,
        "tags": [],
        "comment": None,
        "created_at": datetime(2026, 11, 23, tzinfo=UTC),
    }


def test_0003_follows_0002() -> None:
    assert known_revisions()[:3] == ["0001", "0002", "0003"]


def test_up_down_up(db: Database) -> None:
    upgrade(db, "0002")
    before = _tables(db)
    assert not FLYWHEEL & before
    upgrade(db, "0003")
    assert current_revision(db) == "0003"
    assert _tables(db) == before | FLYWHEEL
    downgrade(db, "0002")
    assert _tables(db) == before
    upgrade(db, "0003")
    assert _tables(db) == before | FLYWHEEL


def test_feedback_client_id_is_unique_per_tenant(migrated_db: Database) -> None:
    with migrated_db.session() as session:
        session.execute(sa.insert(feedback).values(**_feedback_row("fb_1", "c1")))
        # rows without a client id never collide
        session.execute(sa.insert(feedback).values(**_feedback_row("fb_2", None)))
        session.execute(sa.insert(feedback).values(**_feedback_row("fb_3", None)))
    with pytest.raises(sa.exc.IntegrityError), migrated_db.session() as session:
        session.execute(sa.insert(feedback).values(**_feedback_row("fb_4", "c1")))


def test_audit_seq_cannot_be_taken_twice(migrated_db: Database) -> None:
    event = {
        "seq": 1,
        "at": "2026-11-23T00:00:00+00:00",
        "actor": "cli",
        "action": "key.created",
        "target": "fl-00000000",
        "details": {},
        "prev_hash": "0" * 64,
        "hash": "a" * 64,
    }
    with migrated_db.session() as session:
        session.execute(sa.insert(audit_events).values(**event))
    with pytest.raises(sa.exc.IntegrityError), migrated_db.session() as session:
        session.execute(sa.insert(audit_events).values(**{**event, "hash": "b" * 64}))
