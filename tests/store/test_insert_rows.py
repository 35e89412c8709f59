"""`Database.insert_rows`: the request write path, straight through the SQLite driver."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from feilun.core.errors import WorkspaceError
from feilun.store.database import Database, open_database
from feilun.store.migrate import upgrade
from feilun.store.schema import traces, usage

WHEN = datetime(2026, 11, 24, 6, 30, 15, 123456, tzinfo=UTC)


def _rows(trace_id: str) -> list[tuple[sa.Table, dict[str, Any]]]:
    shared = {
        "tenant_id": "tnt_a",
        "key_prefix": "fl-abcd",
        "model": "tiny@1",
        "adapter": None,
        "endpoint": "chat.completions",
        "prompt_tokens": 12,
        "completion_tokens": 8,
        "status": "ok",
        "created_at": WHEN,
    }
    return [
        (
            usage,
            {
                "id": f"use_{trace_id}",
                "trace_id": trace_id,
                "cost": Decimal("0.000123456789"),
                "usage_source": "tokenizer",
                "day": "2026-11-24",
                **shared,
            },
        ),
        (
            traces,
            {
                "id": trace_id,
                "request": {"messages": [{"role": "user", "content": "你好 \u2028 x"}], "n": 1},
                "response": {"choices": [{"text": "hi", "score": 0.5}], "big": 2**70},
                "latency_ms": 3.25,
                **shared,
            },
        ),
    ]


def _read(db: Database, trace_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with db.engine.connect() as connection:
        used = connection.execute(sa.select(usage).where(usage.c.trace_id == trace_id)).one()
        traced = connection.execute(sa.select(traces).where(traces.c.id == trace_id)).one()
    return dict(used._mapping), dict(traced._mapping)


def test_rows_read_back_exactly_as_core_writes_them(migrated_db: Database) -> None:
    migrated_db.insert_rows(_rows("trc_fast"))
    with migrated_db.begin() as connection:
        for table, row in _rows("trc_core"):
            connection.execute(sa.insert(table), row)
    fast_usage, fast_trace = _read(migrated_db, "trc_fast")
    core_usage, core_trace = _read(migrated_db, "trc_core")
    for fast, core in ((fast_usage, core_usage), (fast_trace, core_trace)):
        different = {k for k in core if fast[k] != core[k]}
        assert different <= {"id", "trace_id"}
    assert fast_trace["request"]["messages"][0]["content"] == "你好 \u2028 x"
    assert fast_usage["cost"] == Decimal("0.000123456789")


def test_a_failing_row_leaves_nothing_of_the_transaction(migrated_db: Database) -> None:
    migrated_db.insert_rows(_rows("trc_first"))
    again = _rows("trc_second")
    again[1][1]["id"] = "trc_first"  # this trace id is taken: the second insert fails
    with pytest.raises(sa.exc.IntegrityError):
        migrated_db.insert_rows(again)
    with migrated_db.engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(usage)).scalar()
    assert count == 1  # the second usage row was rolled back with the failed trace
    migrated_db.insert_rows(_rows("trc_third"))  # the pooled connection is usable again


def test_a_held_sqlite_lock_is_waited_for_then_named(tmp_path: Path) -> None:
    path = tmp_path / "feilun.db"
    db = open_database(f"sqlite:///{path}", busy_timeout_ms=300)
    upgrade(db)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WorkspaceError, match="is locked") as info:
            db.insert_rows(_rows("trc_locked"))
        assert str(path) in str(info.value)
        threading.Timer(0.1, holder.rollback).start()  # released within the busy timeout
        db.insert_rows(_rows("trc_waited"))
        assert _read(db, "trc_waited")[1]["status"] == "ok"
    finally:
        holder.close()
        db.close()
