"""The /admin and /v1/feilun routers through FastAPI's TestClient (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from feilun.serving.accounts import Accounts
from feilun.serving.admin.router import router, tenant_router
from feilun.serving.errors import install_error_handlers
from feilun.serving.gateway import Outcome
from feilun.serving.ledger import SqlLedger
from feilun.serving.limits.memory import MemoryLimiter
from feilun.store.database import open_database
from feilun.store.migrate import upgrade


@dataclass
class Setup:
    client: TestClient
    accounts: Accounts
    ledger: SqlLedger
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    db = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(db)
    accounts = Accounts(db)
    ledger = SqlLedger(db, accounts, MemoryLimiter(), cache_ttl_s=0)
    for name in ("ops", "alice", "bob"):
        accounts.create_tenant(name)
    admin = _bearer(accounts.create_key("ops", is_admin=True)[0])
    alice = _bearer(accounts.create_key("alice")[0])
    bob = _bearer(accounts.create_key("bob")[0])
    app = FastAPI()
    install_error_handlers(app)
    app.state.gateway = SimpleNamespace(ledger=ledger)  # what serving.app.build_app sets
    app.include_router(router)
    app.include_router(tenant_router)
    with TestClient(app) as client:
        yield Setup(client, accounts, ledger, admin, alice, bob)
    db.close()


def _serve(setup: Setup, headers: dict[str, str], prompt_tokens: int) -> str:
    principal = setup.ledger.authenticate(headers["Authorization"])
    admission = setup.ledger.admit(principal, "tiny", 10)
    outcome = Outcome(
        "tiny@1",
        None,
        {"q": principal.tenant_name},
        {"a": "ok"},
        prompt_tokens,
        1,
        "tokenizer",
        "ok",
        "chat.completions",
    )
    setup.ledger.settle(admission, outcome)
    return admission.trace_id


def test_admin_routes_need_an_admin_key(setup: Setup) -> None:
    response = setup.client.get("/admin/tenants")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    response = setup.client.get("/admin/tenants", headers=setup.alice)
    assert response.status_code == 403
    assert "not an admin key" in response.json()["error"]["message"]
    response = setup.client.get("/admin/tenants", headers=setup.admin)
    assert [t["name"] for t in response.json()["data"]] == ["alice", "bob", "ops"]


def test_admin_manages_tenants_keys_quotas_prices(setup: Setup) -> None:
    c, admin = setup.client, setup.admin
    assert c.post("/admin/tenants", json={"name": "carol"}, headers=admin).status_code == 201
    r = c.post("/admin/tenants", json={"name": "carol"}, headers=admin)
    assert r.status_code == 400 and "already exists" in r.json()["error"]["message"]
    r = c.post(
        "/admin/keys",
        json={"tenant": "carol", "models": ["tiny"], "expires_in": "7d"},
        headers=admin,
    )
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith(created["prefix"]) and created["models"] == ["tiny"]
    keys = c.get("/admin/keys", params={"tenant": "carol"}, headers=admin).json()["data"]
    assert [k["prefix"] for k in keys] == [created["prefix"]] and "key" not in keys[0]
    assert c.get("/v1/feilun/traces", headers=_bearer(created["key"])).status_code == 200
    r = c.delete(f"/admin/keys/{created['prefix']}", headers=admin)
    assert r.json()["revoked_at"] is not None
    assert c.get("/v1/feilun/traces", headers=_bearer(created["key"])).status_code == 401
    r = c.put("/admin/quotas", json={"tenant": "carol", "tokens_per_day": 500}, headers=admin)
    assert r.json()["tokens_per_day"] == 500 and r.json()["requests_per_minute"] is None
    assert c.get("/admin/quotas/carol", headers=admin).json()["tokens_per_day"] == 500
    r = c.put("/admin/quotas", json={"tenant": "carol", "tokens_per_day": 0}, headers=admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens_per_day"
    r = c.put(
        "/admin/prices",
        json={"model": "tiny", "input_per_1k": "0.0001", "output_per_1k": "0.0002"},
        headers=admin,
    )
    assert r.json() == {"model": "tiny", "input_per_1k": "0.0001", "output_per_1k": "0.0002"}
    assert c.get("/admin/prices", headers=admin).json()["data"][0]["model"] == "tiny"
    r = c.post("/admin/keys", json={"tenant": "nobody"}, headers=admin)
    assert (
        r.status_code == 404 and "tenants: alice, bob, carol, ops" in r.json()["error"]["message"]
    )


def test_a_tenant_reads_only_its_own_usage_and_traces(setup: Setup) -> None:
    c = setup.client
    mine = _serve(setup, setup.alice, 3)
    theirs = _serve(setup, setup.bob, 7)
    assert c.get(f"/v1/feilun/traces/{mine}", headers=setup.alice).json()["id"] == mine
    r = c.get(f"/v1/feilun/traces/{theirs}", headers=setup.alice)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    listed = c.get("/v1/feilun/traces", headers=setup.alice).json()["data"]
    assert [t["id"] for t in listed] == [mine]
    usage = c.get("/v1/feilun/usage", params={"since": "2000-01-01"}, headers=setup.alice).json()
    assert usage["tenant"] == "alice"
    assert [row["prompt_tokens"] for row in usage["data"]] == [3]
    # Query parameters cannot widen the scope.
    r = c.get(
        "/v1/feilun/usage", params={"since": "2000-01-01", "tenant": "bob"}, headers=setup.alice
    )
    assert [row["prompt_tokens"] for row in r.json()["data"]] == [3]
    assert (
        c.get(
            "/admin/usage", params={"tenant": "bob", "since": "2000-01-01"}, headers=setup.alice
        ).status_code
        == 403
    )
    assert c.get(f"/admin/traces/{theirs}", headers=setup.alice).status_code == 403


def test_admin_reads_any_tenant_but_scoped_reads_stay_scoped(setup: Setup) -> None:
    c, admin = setup.client, setup.admin
    mine = _serve(setup, setup.alice, 3)
    theirs = _serve(setup, setup.bob, 7)
    r = c.get("/admin/usage", params={"tenant": "bob", "since": "2000-01-01"}, headers=admin)
    assert [row["prompt_tokens"] for row in r.json()["data"]] == [7]
    assert isinstance(r.json()["data"][0]["cost"], str)
    assert c.get(f"/admin/traces/{theirs}", headers=admin).json()["id"] == theirs
    r = c.get(f"/admin/traces/{theirs}", params={"tenant": "alice"}, headers=admin)
    assert r.status_code == 404
    traces = c.get("/admin/traces", params={"tenant": "alice"}, headers=admin).json()["data"]
    assert [t["id"] for t in traces] == [mine]
    assert len(c.get("/admin/traces", headers=admin).json()["data"]) == 2
    r = c.get("/admin/usage", params={"tenant": "bob", "since": "yesterday"}, headers=admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "since"
