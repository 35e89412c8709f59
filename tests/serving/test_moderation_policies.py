"""Tenant policies in the catalog (SQLite, PostgreSQL), the admin route and CLI; trace purge."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from feilun.cli.accounts import traces_app
from feilun.cli.safety import app as safety_app
from feilun.core.errors import ConfigError
from feilun.governance.moderation import Policy
from feilun.serving.accounts import Accounts
from feilun.serving.gateway import Admission, Gateway, Outcome
from feilun.serving.ledger import SqlLedger, purge_traces
from feilun.serving.limits.memory import MemoryLimiter
from feilun.serving.policies import PolicyStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database
from feilun.store.schema import traces, usage

INTERNAL = Path(__file__).parents[2] / "recipes" / "governance" / "internal.yaml"


@pytest.fixture
def accounts(db: Database) -> Accounts:
    accounts = Accounts(db)
    accounts.create_tenant("acme")
    accounts.create_tenant("other")
    return accounts


def test_a_tenant_policy_is_versioned_and_others_get_the_default(
    db: Database, accounts: Accounts
) -> None:
    store = PolicyStore(SqlCatalog(db), accounts, cache_ttl_s=0)
    acme = accounts.get_tenant("acme").id
    assert store.policy(acme) == Policy()  # nothing stored: the built-in default
    store.set(None, {"default": "flag"}, "cli")
    first = store.set("acme", {"categories": {"terrorism_extremism": "block"}}, "cli")
    second = store.set("acme", {"default": "mask", "traces": {"pii": "keep"}}, "cli")
    assert (first.version, second.version, second.tenant) == (1, 2, "acme")
    assert store.policy(acme).default == "mask" and store.policy(acme).traces.pii == "keep"
    other = accounts.get_tenant("other").id
    assert store.policy(other).default == "flag"  # the deployment default
    record, policy = store.show("other")
    assert record is None and policy.default == "flag"


def test_a_policy_naming_an_unknown_category_is_refused_with_the_list(
    db: Database, accounts: Accounts
) -> None:
    store = PolicyStore(SqlCatalog(db), accounts, cache_ttl_s=0)
    with pytest.raises(ConfigError, match=r"unknown category 'bombs'.*terrorism_extremism \(A"):
        store.set("acme", {"categories": {"bombs": "block"}}, "policy.yaml")
    with pytest.raises(ConfigError, match="actions are block, refuse, flag, mask, allow"):
        store.set("acme", {"default": "nuke"}, "policy.yaml")
    assert store.show("acme")[0] is None  # nothing saved


def test_a_running_server_sees_a_change_within_a_second(db: Database, accounts: Accounts) -> None:
    writer = PolicyStore(SqlCatalog(db), accounts)
    server = PolicyStore(SqlCatalog(db), accounts)  # another process's cache
    acme = accounts.get_tenant("acme").id
    assert server.policy(acme).default == "refuse"
    writer.set("acme", {"default": "flag"}, "cli")
    started = time.monotonic()
    while server.policy(acme).default != "flag":
        assert time.monotonic() - started < 1.2, "the change was not seen within a second"
        time.sleep(0.02)


@pytest.fixture
def admin_url(
    db: Database, accounts: Accounts, serve_app: Callable[[Any], AbstractContextManager[str]]
) -> Iterator[tuple[str, dict[str, str]]]:
    from feilun.serving.admin.policies import router
    from feilun.serving.app import build_app

    secret, _ = accounts.create_key("acme", is_admin=True)
    ledger = SqlLedger(db, accounts, MemoryLimiter())
    app = build_app(Gateway(lambda n: ("", None), list, ledger))  # type: ignore[arg-type]
    app.state.policies = PolicyStore(SqlCatalog(db), accounts)
    app.include_router(router)
    with serve_app(app) as url:
        yield url, {"Authorization": f"Bearer {secret}"}


def test_admin_route_sets_and_shows_policies(admin_url: tuple[str, dict[str, str]]) -> None:
    url, headers = admin_url
    put = httpx.put(
        f"{url}/admin/policies",
        params={"tenant": "other"},
        json={"default": "flag", "labels": {"api": True}},
        headers=headers,
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1 and put.json()["policy"]["labels"]["api"] is True
    shown = httpx.get(f"{url}/admin/policies", params={"tenant": "other"}, headers=headers)
    assert shown.json()["policy"]["default"] == "flag" and not shown.json()["is_inherited"]
    bad = httpx.put(
        f"{url}/admin/policies", json={"categories": {"bombs": "block"}}, headers=headers
    )
    assert bad.status_code == 400 and "terrorism_extremism" in bad.json()["error"]["message"]
    assert httpx.get(f"{url}/admin/policies", headers={}).status_code == 401


def _settle(ledger: SqlLedger, accounts: Accounts, when: datetime) -> str:
    principal = ledger.authenticate(f"Bearer {accounts.create_key('acme')[0]}")
    admission: Admission = ledger.admit(principal, "tiny", 10)
    ledger._clock = lambda: when  # the trace is written at `when`
    outcome = Outcome("tiny@1", None, {}, {}, 3, 4, "tokenizer", "ok", "chat.completions")
    ledger.settle(admission, outcome)
    return admission.trace_id


def test_purge_deletes_old_traces_keeps_usage_and_the_180_day_minimum(
    db: Database, accounts: Accounts
) -> None:
    now = datetime(2026, 11, 5, tzinfo=UTC)
    ledger = SqlLedger(db, accounts, MemoryLimiter(), cache_ttl_s=0)
    old = _settle(ledger, accounts, now - timedelta(days=200))
    recent = _settle(ledger, accounts, now - timedelta(days=10))
    with pytest.raises(ConfigError, match="under the delivery-log minimum of 180 days"):
        purge_traces(db, timedelta(days=30), now=now)
    assert purge_traces(db, timedelta(days=180), now=now) == 1
    with db.session(is_read_only=True) as session:
        kept = set(session.execute(sa.select(traces.c.id)).scalars())
        billed = session.execute(sa.select(sa.func.count()).select_from(usage)).scalar_one()
    assert kept == {recent} and old not in kept and billed == 2
    assert purge_traces(db, timedelta(days=1), is_forced=True, now=now) == 1


def test_cli_policy_set_show_and_traces_purge(env: dict[str, str]) -> None:
    from feilun.app.workspace import init_workspace

    ws, _ = init_workspace(Path(env["FEILUN_WORKSPACE"]), env)
    Accounts(ws.database).create_tenant("acme")
    ws.close()
    app = typer.Typer()
    app.add_typer(safety_app, name="safety")
    app.add_typer(traces_app, name="traces")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    result = run("safety", "policy", "set", "--tenant", "acme", "--file", str(INTERNAL))
    assert result.exit_code == 0 and "version 1" in result.stdout
    shown = json.loads(run("safety", "policy", "show", "--tenant", "acme", "--json").stdout)
    assert shown["policy"]["categories"]["terrorism_extremism"] == "block"
    assert shown["policy"]["refusals"]["en"].startswith("This request is outside")
    assert "core_values" in run("safety", "policy", "show", "--tenant", "acme").stdout
    with pytest.raises(ConfigError, match="180 days"):
        run("traces", "purge", "--older-than", "30d")
    assert json.loads(run("traces", "purge", "--older-than", "180d", "--json").stdout) == {
        "deleted": 0,
        "older_than": "180d",
    }
