"""Tenants, API keys, quotas and prices on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from feilun.core.errors import ConfigError, NotFound
from feilun.serving.accounts import Accounts, hash_secret, parse_duration
from feilun.store.database import Database
from feilun.store.schema import api_keys

NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def accounts(db: Database) -> Accounts:
    return Accounts(db, clock=lambda: NOW)


def test_tenants_are_unique_and_listed(accounts: Accounts) -> None:
    beta = accounts.create_tenant("beta")
    accounts.create_tenant("acme")
    assert [t.name for t in accounts.list_tenants()] == ["acme", "beta"]
    assert accounts.get_tenant(beta.id) == accounts.get_tenant("beta") == beta
    with pytest.raises(ConfigError, match="tenant 'acme' already exists"):
        accounts.create_tenant("acme")
    with pytest.raises(ConfigError, match="tenant name 'a b' is not allowed"):
        accounts.create_tenant("a b")


def test_unknown_tenant_lists_the_existing_ones(accounts: Accounts) -> None:
    accounts.create_tenant("acme")
    with pytest.raises(NotFound, match="no tenant 'nope'; tenants: acme") as info:
        accounts.create_key("nope")
    assert "feilun tenants create" in str(info.value)


def test_key_secret_is_returned_once_and_stored_hashed(accounts: Accounts, db: Database) -> None:
    accounts.create_tenant("acme")
    secret, key = accounts.create_key("acme", ["tiny", "tiny", " other "], "30d")
    assert secret.startswith(key.prefix) and len(key.prefix) == 11
    assert key.prefix.startswith("fl-")
    assert key.models == ("tiny", "other")
    assert key.expires_at == NOW + timedelta(days=30)
    with db.session(is_read_only=True) as session:
        row = session.execute(sa.select(api_keys)).one()
    assert row.secret_hash == hash_secret(secret)
    assert secret not in repr(tuple(row))
    found = accounts.find_key(key.prefix)
    assert found is not None and found[0] == key and found[1] == hash_secret(secret)
    secret2, key2 = accounts.create_key("acme", is_admin=True)
    assert secret2 != secret and key2.models is None and key2.is_admin
    assert {k.prefix for k in accounts.list_keys("acme")} == {key.prefix, key2.prefix}


def test_revoke_is_idempotent_and_unknown_prefix_is_not_found(accounts: Accounts) -> None:
    accounts.create_tenant("acme")
    _, key = accounts.create_key("acme")
    revoked = accounts.revoke_key(key.prefix)
    assert revoked.revoked_at == NOW
    assert accounts.revoke_key(key.prefix).revoked_at == NOW
    with pytest.raises(NotFound, match="fl-ffffffff"):
        accounts.revoke_key("fl-ffffffff")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "0d", "-1d", "30y", "d30"])
def test_bad_duration_names_value_and_fix(text: str) -> None:
    with pytest.raises(ConfigError, match=f"expires {text!r} is not a duration") as info:
        parse_duration(text)
    assert "30d" in str(info.value)


def test_a_bad_duration_names_what_it_is() -> None:
    with pytest.raises(ConfigError, match="--older-than '3 days' is not a duration") as info:
        parse_duration("3 days", what="--older-than")
    assert "30d" in str(info.value)


def test_empty_model_list_is_refused(accounts: Accounts) -> None:
    accounts.create_tenant("acme")
    with pytest.raises(ConfigError, match="model list is empty"):
        accounts.create_key("acme", [" ", ""])


def test_quota_replace_and_validation(accounts: Accounts) -> None:
    tenant = accounts.create_tenant("acme")
    assert accounts.get_quota(tenant.id).tokens_per_day is None
    accounts.set_quota("acme", 1000, 60)
    accounts.set_quota("acme", 2000, None)
    quota = accounts.get_quota(tenant.id)
    assert (quota.tokens_per_day, quota.requests_per_minute) == (2000, None)
    with pytest.raises(ConfigError, match="tokens_per_day=0 must be ≥ 1"):
        accounts.set_quota("acme", 0, None)


def test_prices_are_exact_decimals(accounts: Accounts) -> None:
    accounts.set_price("tiny", "0.00015", Decimal("0.0006"))
    accounts.set_price("tiny", "0.0001", 0.1)  # replaces; a float goes through its repr
    price = accounts.get_price("tiny")
    assert price is not None
    assert (price.input_per_1k, price.output_per_1k) == (Decimal("0.0001"), Decimal("0.1"))
    assert accounts.get_price("other") is None
    assert [p.model for p in accounts.list_prices()] == ["tiny"]
    with pytest.raises(ConfigError, match="input_per_1k='-1' is not a price"):
        accounts.set_price("tiny", "-1", "0")
    with pytest.raises(ConfigError, match="output_per_1k='abc'"):
        accounts.set_price("tiny", "0", "abc")
