"""Account changes and admin logins are audited in the same transaction (SQLite, PostgreSQL)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from feilun.governance.audit import AuditLog, derive_keys
from feilun.serving.accounts import Accounts
from feilun.serving.admin.router import router
from feilun.serving.errors import install_error_handlers
from feilun.serving.ledger import SqlLedger
from feilun.serving.limits.memory import MemoryLimiter
from feilun.store.audit import SqlAuditStore
from feilun.store.database import Database
from feilun.store.schema import audit_events, tenants

LOG = AuditLog(derive_keys(b"s" * 32))


def _events(db: Database) -> list[dict[str, Any]]:
    with db.session(is_read_only=True) as session:
        return list(SqlAuditStore(session).events())


def test_every_account_change_is_an_event(db: Database) -> None:
    accounts = Accounts(db, audit=LOG)
    accounts.create_tenant("acme", actor="ops")
    secret, key = accounts.create_key("acme", models=["tiny"], expires_in="30d")
    accounts.set_quota("acme", 1000, None)
    accounts.set_price("tiny", "0.5", 1)
    accounts.revoke_key(key.prefix)
    accounts.revoke_key(key.prefix)  # a second revoke changes nothing: no event
    events = _events(db)
    assert [(e["action"], e["target"]) for e in events] == [
        ("tenant.created", "acme"),
        ("key.created", key.prefix),
        ("quota.set", "acme"),
        ("price.set", "tiny"),
        ("key.revoked", key.prefix),
    ]
    assert events[0]["actor"] == "ops" and events[1]["actor"].startswith("local:")
    assert events[1]["details"]["models"] == ["tiny"] and secret not in str(events)
    assert events[3]["details"] == {"input_per_1k": "0.5", "output_per_1k": "1"}
    with db.session(is_read_only=True) as session:
        assert LOG.verify(SqlAuditStore(session)).is_valid


def test_a_failed_audit_write_undoes_the_change(db: Database) -> None:
    accounts = Accounts(db, audit=LOG)
    with db.session() as session:  # a broken audit table: every append fails
        session.execute(sa.text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
    with pytest.raises(
        sa.exc.ProgrammingError if db.dialect == "postgresql" else sa.exc.OperationalError
    ):
        accounts.create_tenant("acme")
    with db.session(is_read_only=True) as session:
        assert session.execute(sa.select(tenants.c.name)).all() == []


def test_admin_requests_log_in_once_a_day_per_key(db: Database) -> None:
    accounts = Accounts(db, audit=LOG)
    accounts.create_tenant("ops")
    secret, key = accounts.create_key("ops", is_admin=True)
    app = FastAPI()
    install_error_handlers(app)
    app.state.gateway = SimpleNamespace(ledger=SqlLedger(db, accounts, MemoryLimiter()))
    app.include_router(router)
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(app) as client:
        assert client.get("/admin/tenants", headers=headers).status_code == 200
        assert client.post("/admin/tenants", json={"name": "b"}, headers=headers).status_code == 201
    # A restarted server (a new Accounts) finds today's login in the log and adds none.
    Accounts(db, audit=LOG).record_admin_login(key.prefix)
    logins = [e for e in _events(db) if e["action"] in ("admin.login", "tenant.created")]
    assert [(e["action"], e["actor"]) for e in logins] == [
        ("tenant.created", "local:" + logins[0]["actor"].split(":", 1)[1]),
        ("admin.login", f"key:{key.prefix}"),
        ("tenant.created", f"key:{key.prefix}"),
    ]
    with db.session(is_read_only=True) as session:
        count = session.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar()
    assert count == 4  # ops created, key created, one login, b created
