"""SqlLedger: authentication, admission under quotas (raced), exact settlement, scoped reads.

Runs on SQLite and PostgreSQL; the races also on both limiters (in-process and Redis).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from feilun.core.blocking import run_nonblocking
from feilun.core.errors import ConfigError, NotFound, QuotaExceeded
from feilun.serving.accounts import Accounts
from feilun.serving.errors import AuthenticationFailed, PermissionDenied
from feilun.serving.gateway import Admission, Outcome, Principal
from feilun.serving.ledger import SqlLedger
from feilun.serving.limits import Limiter
from feilun.serving.limits.memory import MemoryLimiter
from feilun.store.database import Database
from feilun.store.schema import traces, usage

START = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(db: Database, clock: Clock) -> Accounts:
    return Accounts(db, clock=clock)


@pytest.fixture
def ledger(db: Database, accounts: Accounts, clock: Clock) -> SqlLedger:
    return SqlLedger(db, accounts, MemoryLimiter(), clock=clock, cache_ttl_s=0)


def outcome(prompt: int, completion: int, model: str = "tiny@1", **kw: Any) -> Outcome:
    values: dict[str, Any] = {
        "model": model,
        "adapter": None,
        "request": {"messages": [{"role": "user", "content": "飞轮?"}]},
        "response": {"text": "转"},
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "usage_source": "tokenizer",
        "status": "ok",
        "endpoint": "chat.completions",
    }
    return Outcome(**{**values, **kw})


def tenant_key(accounts: Accounts, name: str, **kw: Any) -> str:
    accounts.create_tenant(name)
    secret, _ = accounts.create_key(name, **kw)
    return secret


def usage_total(db: Database, tenant_id: str) -> int:
    query = sa.select(sa.func.sum(usage.c.prompt_tokens + usage.c.completion_tokens)).where(
        usage.c.tenant_id == tenant_id
    )
    with db.session(is_read_only=True) as session:
        return int(session.execute(query).scalar_one() or 0)


# --- authenticate ---------------------------------------------------------------------------
def test_authenticate_a_valid_key(ledger: SqlLedger, accounts: Accounts) -> None:
    secret = tenant_key(accounts, "acme", models=["tiny"])
    principal = ledger.authenticate(f"Bearer {secret}")
    assert principal.tenant_name == "acme"
    assert principal.key_prefix == secret[:11]
    assert principal.models == ("tiny",) and not principal.is_admin
    assert ledger.authenticate(f"bearer   {secret} ") == principal


def test_authentication_failures_are_distinct_and_never_echo_the_secret(
    ledger: SqlLedger, accounts: Accounts, clock: Clock
) -> None:
    secret = tenant_key(accounts, "acme", expires_in="1h")
    revoked = accounts.create_key("acme")[0]
    accounts.revoke_key(revoked[:11])
    tail = secret[11:]
    cases = {
        None: "missing API key",
        "": "missing API key",
        "Basic dXNlcjpwYXNz": "got scheme 'Basic'",
        secret: "got no scheme",
        "Bearer ": "got scheme 'Bearer'",
        "Bearer sk-somebody-elses-key": "invalid API key: no such key",
        f"Bearer {secret[:11]}{tail[::-1]}": f"invalid API key {secret[:11]}",
        f"Bearer fl-00000000{tail}": "invalid API key fl-00000000",
        f"Bearer {revoked}": f"API key {revoked[:11]} was revoked",
    }
    for header, expected in cases.items():
        with pytest.raises(AuthenticationFailed, match=expected) as info:
            ledger.authenticate(header)
        assert tail not in str(info.value) and revoked[11:] not in str(info.value)
    clock.now += timedelta(hours=1)
    with pytest.raises(AuthenticationFailed, match=f"API key {secret[:11]} expired at"):
        ledger.authenticate(f"Bearer {secret}")


def test_a_revoked_key_stops_working_within_a_second(
    db: Database, accounts: Accounts, clock: Clock
) -> None:
    ledger = SqlLedger(db, accounts, MemoryLimiter(), clock=clock)  # default 1 s cache
    secret = tenant_key(accounts, "acme")
    ledger.authenticate(f"Bearer {secret}")
    accounts.revoke_key(secret[:11])
    time.sleep(1.05)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        ledger.authenticate(f"Bearer {secret}")


# --- admit ----------------------------------------------------------------------------------
def test_model_allow_list(ledger: SqlLedger, accounts: Accounts) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme", models=["tiny", "m"]))
    assert ledger.admit(principal, "tiny", 1).model == "tiny"
    assert ledger.admit(principal, "tiny@2", 1).trace_id.startswith("trc_")
    with pytest.raises(PermissionDenied, match="may not use model 'other'; it may use: tiny, m"):
        ledger.admit(principal, "other", 1)


def test_request_larger_than_the_whole_quota(
    ledger: SqlLedger, accounts: Accounts, clock: Clock
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_quota("acme", 100, None)
    with pytest.raises(QuotaExceeded, match="may use 101 tokens .* whole daily quota of 100") as e:
        ledger.admit(principal, "tiny", 101)
    assert e.value.retry_after_s == 12 * 3600  # type: ignore[attr-defined]


def _admit_and_settle(ledger: SqlLedger, principal: Principal, tokens: int) -> Any:
    try:
        admission = ledger.admit(principal, "tiny", tokens)
    except QuotaExceeded as e:
        return e
    ledger.settle(admission, outcome(tokens // 2, tokens - tokens // 2))
    return admission


def test_fifty_requests_race_for_the_last_hundred_tokens(
    db: Database, accounts: Accounts, limiter: Limiter, clock: Clock, race: Callable[..., list[Any]]
) -> None:
    ledger = SqlLedger(db, accounts, limiter, clock=clock, cache_ttl_s=0)
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    ledger.settle(ledger.admit(principal, "tiny", 900), outcome(600, 300))  # no quota yet
    accounts.set_quota("acme", 1000, None)
    results = race(50, lambda: _admit_and_settle(ledger, principal, 10))
    admitted = [r for r in results if isinstance(r, Admission)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(admitted), len(refused)) == (10, 40)
    assert all(e.retry_after_s == 12 * 3600 for e in refused)  # type: ignore[attr-defined]
    assert usage_total(db, principal.tenant_id) == 1000
    with pytest.raises(QuotaExceeded, match="over its daily quota of 1000 tokens"):
        ledger.admit(principal, "tiny", 1)
    clock.now += timedelta(days=1)  # a new UTC day, a new budget
    ledger.admit(principal, "tiny", 1000)


def test_requests_race_for_the_rate_limit(
    db: Database, accounts: Accounts, limiter: Limiter, clock: Clock, race: Callable[..., list[Any]]
) -> None:
    ledger = SqlLedger(db, accounts, limiter, clock=clock, cache_ttl_s=0)
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_quota("acme", None, 7)
    results = race(20, lambda: _admit_and_settle(ledger, principal, 2))
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 13
    assert all(0 < e.retry_after_s <= 60 for e in refused)  # type: ignore[attr-defined]
    assert "rate limit of 7 requests per minute" in str(refused[0])


def test_a_refusal_takes_neither_tokens_nor_a_rate_slot(
    db: Database, accounts: Accounts, limiter: Limiter, clock: Clock
) -> None:
    ledger = SqlLedger(db, accounts, limiter, clock=clock, cache_ttl_s=0)
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_quota("acme", 100, 2)
    first = ledger.admit(principal, "tiny", 90)
    with pytest.raises(QuotaExceeded, match="daily quota"):  # over tokens: no rate slot taken
        ledger.admit(principal, "tiny", 20)
    second = ledger.admit(principal, "tiny", 10)  # the 2nd rate slot is still free
    with pytest.raises(QuotaExceeded, match="rate limit"):  # over rate: its tokens given back
        ledger.admit(principal, "tiny", 0)
    ledger.settle(first, outcome(40, 40))
    ledger.settle(second, outcome(5, 5))
    accounts.set_quota("acme", 100, None)  # lift the rate limit: 100 - 90 billed leaves 10
    ledger.admit(principal, "tiny", 10)
    with pytest.raises(QuotaExceeded, match="daily quota"):
        ledger.admit(principal, "tiny", 1)


def test_unused_reservation_is_given_back_and_overrun_charged(
    ledger: SqlLedger, accounts: Accounts
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_quota("acme", 100, None)
    first = ledger.admit(principal, "tiny", 80)
    with pytest.raises(QuotaExceeded):
        ledger.admit(principal, "tiny", 30)
    ledger.settle(first, outcome(10, 10))  # used 20 of the 80 reserved
    second = ledger.admit(principal, "tiny", 80)
    ledger.settle(second, outcome(50, 40))  # 90 > 80 reserved: the overrun is billed too
    with pytest.raises(QuotaExceeded):
        ledger.admit(principal, "tiny", 1)


def test_failed_settle_still_releases_the_reservation(
    ledger: SqlLedger, accounts: Accounts
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_quota("acme", 100, None)
    admission = ledger.admit(principal, "tiny", 100)
    with pytest.raises(sa.exc.IntegrityError):
        ledger.settle(admission, outcome(1, 1, status=None))  # NOT NULL: the insert fails
    ledger.admit(principal, "tiny", 100)


# --- settle ---------------------------------------------------------------------------------
def test_settle_writes_usage_and_trace_once_with_exact_cost(
    ledger: SqlLedger, accounts: Accounts, db: Database
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_price("tiny", "0.0001", "0.0003")
    admission = ledger.admit(principal, "prod", 50)
    ledger.settle(admission, outcome(1000, 333, model="tiny@1", usage_source="upstream"))
    ledger.settle(admission, outcome(9, 9))  # a second settle of the same trace does nothing
    with db.session(is_read_only=True) as session:
        rows = session.execute(sa.select(usage)).all()
        trace = session.execute(sa.select(traces)).one()
    assert len(rows) == 1
    row = rows[0]
    assert row.cost == Decimal("0.0001999")  # 1000/1000*0.0001 + 333/1000*0.0003
    assert (row.trace_id, row.day, row.usage_source) == (
        admission.trace_id,
        "2026-11-05",
        "upstream",
    )
    assert (row.key_prefix, row.tenant_id) == (principal.key_prefix, principal.tenant_id)
    assert trace.id == admission.trace_id and trace.request["messages"][0]["content"] == "飞轮?"
    assert trace.latency_ms >= 0 and (trace.prompt_tokens, trace.completion_tokens) == (1000, 333)


def test_price_lookup_falls_back_from_served_to_requested_name(
    ledger: SqlLedger, accounts: Accounts
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_price("prod", "1", "1")
    accounts.set_price("base:adp", "2", "2")
    for requested, served, cost in [
        ("prod", "tiny@1", "2"),  # no price for tiny: the alias asked for
        ("x", "base@1:adp@3", "4"),  # the unversioned adapter
        ("y", "nothing@1", "0"),
    ]:
        ledger.settle(ledger.admit(principal, requested, 1), outcome(1000, 1000, model=served))
        report = {r.model: r.cost for r in ledger.usage_report(principal.tenant_id, "2026-11-05")}
        assert report[served] == Decimal(cost)


def test_usage_report_adds_up_exactly_per_day_and_model(
    ledger: SqlLedger, accounts: Accounts, clock: Clock
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_price("tiny", "0.1", "0.2")
    for day, model, count in [(0, "tiny@1", 3), (0, "other@1", 1), (1, "tiny@1", 2)]:
        clock.now = START + timedelta(days=day)
        for _ in range(count):
            admission = ledger.admit(principal, model.split("@")[0], 1)
            ledger.settle(admission, outcome(1, 2, model=model))
    rows = ledger.usage_report(principal.tenant_id, "2026-11-05", "2026-11-06")
    assert [(r.day, r.model, r.requests) for r in rows] == [
        ("2026-11-05", "other@1", 1),
        ("2026-11-05", "tiny@1", 3),
        ("2026-11-06", "tiny@1", 2),
    ]
    assert rows[1].cost == Decimal("0.0015")  # 3 × (0.0001 + 0.0004), exactly
    assert sum(r.cost for r in rows) == Decimal("0.0025")  # "other" has no price: 0
    assert (rows[1].prompt_tokens, rows[1].completion_tokens) == (3, 6)
    assert [r.day for r in ledger.usage_report(principal.tenant_id, "2026-11-06")] == ["2026-11-06"]
    with pytest.raises(ConfigError, match="since '11/05/2026' is not a date"):
        ledger.usage_report(principal.tenant_id, "11/05/2026")
    with pytest.raises(ConfigError, match="before since"):
        ledger.usage_report(principal.tenant_id, "2026-11-06", "2026-11-05")


def test_request_settled_after_midnight_is_billed_to_its_day(
    ledger: SqlLedger, accounts: Accounts, clock: Clock
) -> None:
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    clock.now = START.replace(hour=23, minute=59, second=59)
    admission = ledger.admit(principal, "tiny", 5)
    clock.now += timedelta(seconds=2)
    ledger.settle(admission, outcome(2, 3))
    assert [r.day for r in ledger.usage_report(principal.tenant_id, "2026-11-01")] == ["2026-11-05"]


# --- reads across tenants -------------------------------------------------------------------
def test_one_tenant_never_reads_another_tenants_traces_or_usage(
    ledger: SqlLedger, accounts: Accounts
) -> None:
    alice = ledger.authenticate("Bearer " + tenant_key(accounts, "alice"))
    bob = ledger.authenticate("Bearer " + tenant_key(accounts, "bob"))
    mine = ledger.admit(alice, "tiny", 1)
    ledger.settle(mine, outcome(1, 1))
    theirs = ledger.admit(bob, "tiny", 1)
    ledger.settle(theirs, outcome(5, 5))
    assert ledger.get_trace(mine.trace_id, alice.tenant_id).id == mine.trace_id
    with pytest.raises(NotFound, match=f"no trace '{theirs.trace_id}'"):
        ledger.get_trace(theirs.trace_id, alice.tenant_id)
    with pytest.raises(NotFound, match="no trace 'trc_missing'"):
        ledger.get_trace("trc_missing", alice.tenant_id)
    assert [t.id for t in ledger.list_traces(alice.tenant_id)] == [mine.trace_id]
    assert {t.id for t in ledger.list_traces(None)} == {mine.trace_id, theirs.trace_id}
    assert [r.prompt_tokens for r in ledger.usage_report(alice.tenant_id, "2026-11-01")] == [1]
    with pytest.raises(ConfigError, match="limit=0"):
        ledger.list_traces(None, 0)


# --- settle from the event loop ---------------------------------------------------------------
def test_settle_from_the_loop_is_inline_on_sqlite_and_threaded_when_it_must_wait(
    accounts: Accounts, db: Database, clock: Clock
) -> None:
    """Warm SQLite settles run on the loop; a cold cache, PostgreSQL or a held lock: a thread."""
    ledger = SqlLedger(db, accounts, MemoryLimiter(), clock=clock, cache_ttl_s=60)
    principal = ledger.authenticate("Bearer " + tenant_key(accounts, "acme"))
    accounts.set_quota("acme", 1000, None)
    ran_on: list[int] = []

    def recorded(admission: Admission, done: Outcome) -> None:
        ran_on.append(threading.get_ident())
        ledger.settle(admission, done)

    async def settle_from_loop() -> int:
        admission = ledger.admit(principal, "tiny", 100)
        await run_nonblocking(recorded, admission, outcome(10, 20))
        return threading.get_ident()

    def threads_of_one_settle() -> list[str]:
        ran_on.clear()
        loop_thread = anyio.run(settle_from_loop)
        return ["loop" if ident == loop_thread else "thread" for ident in ran_on]

    assert threads_of_one_settle() == ["loop", "thread"]  # the price is not cached yet
    if db.dialect == "sqlite":
        assert threads_of_one_settle() == ["loop"]
        # Another writer holds the lock: the loop does not wait for it, a thread does.
        holder = sqlite3.connect(str(db.sqlite_path), isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.3, holder.execute, ["COMMIT"])
        timer.start()
        assert threads_of_one_settle() == ["loop", "thread"]
        timer.join()
        holder.close()
    else:
        assert threads_of_one_settle() == ["loop", "thread"]
    with db.session(is_read_only=True) as session:
        rows = session.execute(sa.select(usage.c.prompt_tokens, usage.c.completion_tokens)).all()
    settles = 3 if db.dialect == "sqlite" else 2
    assert [tuple(r) for r in rows] == [(10, 20)] * settles
    # Each settle gave back exactly its unused reservation: 30 tokens each were billed.
    ledger.admit(principal, "tiny", 1000 - 30 * settles)
    with pytest.raises(QuotaExceeded):
        ledger.admit(principal, "tiny", 1)
