"""The audit chain in the database (SQLite and PostgreSQL): tampering, races, transactions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from feilun.governance.audit import AuditKeys, AuditLog, derive_keys
from feilun.store.audit import SqlAuditStore
from feilun.store.database import Database
from feilun.store.schema import audit_checkpoints, audit_events, tenants

KEYS = derive_keys(b"d" * 32)


def _clock() -> Callable[[], datetime]:
    ticks = iter(range(10**6))
    start = datetime(2026, 11, 23, 12, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(ticks))


def _log(every: int = 3, keys: AuditKeys = KEYS) -> AuditLog:
    return AuditLog(keys, checkpoint_every=every, clock=_clock())


def _fill(db: Database, n: int = 8, every: int = 3) -> AuditLog:
    log = _log(every)
    with db.session() as session:
        store = SqlAuditStore(session)
        for i in range(1, n + 1):
            log.append(store, "admin", "quota.set", f"t{i}", {"tokens_per_day": i * 10})
    return log


def _verify(db: Database, log: AuditLog) -> Any:
    with db.session(is_read_only=True) as session:
        return log.verify(SqlAuditStore(session))


def _update(db: Database, seq: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(sa.update(audit_events).where(audit_events.c.seq == seq).values(**values))


def _row(db: Database, seq: int) -> dict[str, Any]:
    with db.session(is_read_only=True) as session:
        row = session.execute(sa.select(audit_events).where(audit_events.c.seq == seq)).one()
    return dict(row._mapping)


def test_an_untouched_log_verifies_with_its_checkpoints(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    check = _verify(migrated_db, log)
    assert (check.is_valid, check.checked, check.checkpoints) == (True, 8, 2)  # pins at 3, 6
    with migrated_db.session() as session:
        pin = log.checkpoint(SqlAuditStore(session))
        again = log.checkpoint(SqlAuditStore(session))
    assert pin is not None and pin.seq == 8 and again == pin
    assert _verify(migrated_db, log).checkpoints == 3


def test_edited_details_are_found_at_the_edited_event(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    _update(migrated_db, 5, details={"tokens_per_day": 10**9})
    check = _verify(migrated_db, log)
    assert (check.is_valid, check.first_bad_seq, check.checked) == (False, 5, 4)
    assert "edited" in check.problem


def test_an_edited_hash_is_found_at_its_event(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    _update(migrated_db, 2, hash="f" * 64)
    assert _verify(migrated_db, log).first_bad_seq == 2


def test_a_deleted_middle_row_is_found_where_the_gap_is(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    with migrated_db.session() as session:
        session.execute(sa.delete(audit_events).where(audit_events.c.seq == 4))
    check = _verify(migrated_db, log)
    assert (check.first_bad_seq, check.problem) == (4, "event(s) 4 were deleted (next is 5)")


def test_a_deleted_tail_past_a_checkpoint_is_found(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    with migrated_db.session() as session:
        session.execute(sa.delete(audit_events).where(audit_events.c.seq >= 5))
    check = _verify(migrated_db, log)
    assert (check.is_valid, check.first_bad_seq, check.checked) == (False, 5, 4)
    assert "checkpoint 6" in check.problem and "deleted" in check.problem


def test_two_rows_with_swapped_contents_are_found_at_the_first(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    second, fifth = _row(migrated_db, 2), _row(migrated_db, 5)
    _update(migrated_db, 2, **{k: v for k, v in fifth.items() if k != "seq"})
    _update(migrated_db, 5, **{k: v for k, v in second.items() if k != "seq"})
    check = _verify(migrated_db, log)
    assert (check.first_bad_seq, check.checked) == (2, 1)


def test_a_re_hash_with_the_chain_key_but_not_the_checkpoint_key_is_caught(
    migrated_db: Database,
) -> None:
    log = _fill(migrated_db)
    # The attacker holds the chain key: they edit event 5 and re-hash 5..8 consistently.
    forger = _log(keys=AuditKeys(KEYS.chain, b"guessed" * 5))
    with migrated_db.session() as session:
        session.execute(sa.delete(audit_events).where(audit_events.c.seq >= 5))
        store = SqlAuditStore(session)
        forger.append(store, "admin", "quota.set", "t5", {"tokens_per_day": 10**9})
        for i in range(6, 9):
            forger.append(store, "admin", "quota.set", f"t{i}", {"tokens_per_day": i * 10})
        session.execute(sa.delete(audit_checkpoints).where(audit_checkpoints.c.seq > 6))
    with migrated_db.session(is_read_only=True) as session:
        assert not _forged_chain_breaks(log, session)
    check = _verify(migrated_db, log)
    # The chain itself is consistent; checkpoint 6 (signed before) pins the range 4-6.
    assert (check.is_valid, check.first_bad_seq) == (False, 4)
    assert "checkpoint 6" in check.problem and "re-hashed" in check.problem


def _forged_chain_breaks(log: AuditLog, session: Any) -> bool:
    from feilun.governance.audit import event_of, verify_chain

    events = [event_of(row) for row in SqlAuditStore(session).events()]
    return not verify_chain(log.keys.chain, events).is_valid


def test_a_forged_checkpoint_signature_is_found(migrated_db: Database) -> None:
    log = _fill(migrated_db)
    with migrated_db.session() as session:
        session.execute(
            sa.update(audit_checkpoints)
            .where(audit_checkpoints.c.seq == 3)
            .values(signature="0" * 64)
        )
    check = _verify(migrated_db, log)
    assert check.first_bad_seq == 3 and "signature" in check.problem


def test_an_event_rolls_back_with_its_change_and_the_change_with_the_event(
    migrated_db: Database,
) -> None:
    log = _log()
    with pytest.raises(RuntimeError), migrated_db.session() as session:
        session.execute(sa.insert(tenants).values(id="t1", name="a", created_at=datetime.now(UTC)))
        log.append(SqlAuditStore(session), "admin", "tenant.created", "a")
        raise RuntimeError("the change fails after the event was written")
    with pytest.raises(RuntimeError), migrated_db.session() as session:
        log.append(SqlAuditStore(session), "admin", "tenant.created", "b")
        session.execute(sa.insert(tenants).values(id="t2", name="b", created_at=datetime.now(UTC)))
        raise RuntimeError("the event was written first; the change still fails")
    with migrated_db.session(is_read_only=True) as session:
        assert list(SqlAuditStore(session).events()) == []
        assert session.execute(sa.select(sa.func.count()).select_from(tenants)).scalar() == 0


def test_concurrent_appenders_never_fork_the_chain(migrated_db: Database) -> None:
    log, threads, per_thread = _log(every=10), 6, 8
    barrier, errors = threading.Barrier(threads), []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with migrated_db.session() as session:
                    log.append(SqlAuditStore(session), f"w{n}", "test.append", f"{n}.{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    check = _verify(migrated_db, log)
    assert (check.is_valid, check.checked) == (True, threads * per_thread)
    with migrated_db.session(is_read_only=True) as session:
        targets = {row["target"] for row in SqlAuditStore(session).events()}
    assert len(targets) == threads * per_thread


def test_events_filter_by_action_target_and_time(migrated_db: Database) -> None:
    _fill(migrated_db, n=4)
    with migrated_db.session() as session:
        store = SqlAuditStore(session)
        _log().append(store, "ops", "key.revoked", "fl-1")
        assert [e["seq"] for e in store.events(action="key.revoked")] == [5]
        assert [e["seq"] for e in store.events(target="t2")] == [2]
        assert [e["seq"] for e in store.events(since="2026-11-23T12:00:02+00:00")] == [3, 4]
        assert [e["seq"] for e in store.events(limit=2, newest_first=True)] == [5, 4]
