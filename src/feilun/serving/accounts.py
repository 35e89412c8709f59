"""Tenants, API keys, quotas and prices: who may call the gateway, how much, at what price.

An API key's secret is returned once by `create_key` and never stored: the database keeps its
SHA-256 and a visible prefix (`fl-` + 8 hex characters) to find it by. With an `AuditLog`, every
change appends an audit event in the same transaction (`actor`: who asked, `local:<user>` when
not given), and an admin key's first /admin request of each UTC day is an `admin.login` event.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import new_id, utc_now
from feilun.governance.audit import AuditLog, local_actor
from feilun.store.audit import SqlAuditStore
from feilun.store.database import Database
from feilun.store.schema import api_keys, prices, quotas, tenants

KEY_PREFIX = "fl-"
PREFIX_LENGTH = len(KEY_PREFIX) + 8
PREFIX_PATTERN = re.compile(r"fl-[0-9a-f]{8}")
_TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Tenant:
    """A customer of the gateway: its keys, quota, usage and traces belong to it."""

    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    """An API key as listed (never its secret)."""

    prefix: str
    tenant_id: str
    tenant_name: str
    models: tuple[str, ...] | None  # None: every model
    is_admin: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields, times as ISO 8601."""
        out = asdict(self)
        out["models"] = list(self.models) if self.models is not None else None
        for name in ("created_at", "expires_at", "revoked_at"):
            out[name] = out[name].isoformat() if out[name] else None
        return out


@dataclass(frozen=True)
class Quota:
    """A tenant's limits; None means unlimited."""

    tenant_id: str
    tokens_per_day: int | None = None
    requests_per_minute: int | None = None


@dataclass(frozen=True)
class Price:
    """What 1000 prompt (input) and completion (output) tokens of a model cost."""

    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal


def hash_secret(secret: str) -> str:
    """SHA-256 (hex) of a whole API key; the secrets are random, so no salt is needed."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_duration(text: str, what: str = "expires") -> timedelta:
    """`30d`, `12h`, `90m`, `3600s` or `2w` as a timedelta (> 0); errors name `what` is wrong."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(
            f"{what} {text!r} is not a duration",
            "write a positive number and a unit: 3600s, 90m, 12h, 30d or 2w",
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_money(value: Decimal | str | int | float, what: str) -> Decimal:
    """A non-negative price as an exact Decimal (floats go through their shortest repr)."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{what}={value!r} is not a price", f"give {what} as a number ≥ 0")
    return amount


class Accounts:
    """Tenants, keys, quotas and prices in the metadata database."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] = utc_now,
        audit: AuditLog | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._admin_days: set[tuple[str, str]] = set()  # (key prefix, UTC day) logged already

    def _record(
        self,
        session: Session,
        actor: str | None,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit event in the caller's transaction (nothing without an AuditLog)."""
        if self._audit is not None:
            store = SqlAuditStore(session)
            self._audit.append(store, actor or local_actor(), action, target, details)

    def audit(
        self,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        """Audit a change stored elsewhere (a catalog record), in its own transaction, after it."""
        if self._audit is not None:
            with self._db.session() as session:
                self._record(session, actor, action, target, details)

    def record_admin_login(self, key_prefix: str) -> None:
        """Audit an admin key's first /admin request of the UTC day (later ones are not)."""
        day = self._clock().date().isoformat()
        if self._audit is None or (key_prefix, day) in self._admin_days:
            return
        with self._db.session() as session:
            store = SqlAuditStore(session)
            if next(store.events(action="admin.login", target=key_prefix, since=day), None) is None:
                self._audit.append(store, f"key:{key_prefix}", "admin.login", key_prefix)
        self._admin_days.add((key_prefix, day))

    # --- tenants -------------------------------------------------------------------------
    def create_tenant(self, name: str, actor: str | None = None) -> Tenant:
        """Create a tenant; names are unique."""
        if not _TENANT_NAME.fullmatch(name):
            raise ConfigError(
                f"tenant name {name!r} is not allowed",
                "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        with self._db.session() as session:
            if session.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first():
                raise ConfigError(
                    f"tenant {name!r} already exists", "pick another name or use the existing one"
                )
            tenant = Tenant(id=new_id("tnt"), name=name, created_at=self._clock())
            session.execute(sa.insert(tenants).values(**asdict(tenant)))
            self._record(session, actor, "tenant.created", name, {"tenant_id": tenant.id})
        return tenant

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        with self._db.session(is_read_only=True) as session:
            rows = session.execute(sa.select(tenants).order_by(tenants.c.name)).all()
        return [Tenant(id=r.id, name=r.name, created_at=r.created_at) for r in rows]

    def get_tenant(self, tenant: str) -> Tenant:
        """A tenant by name or id; NotFound lists the tenants that exist."""
        query = sa.select(tenants).where(sa.or_(tenants.c.name == tenant, tenants.c.id == tenant))
        with self._db.session(is_read_only=True) as session:
            row = session.execute(query).first()
        if row is None:
            names = [t.name for t in self.list_tenants()]
            raise NotFound(
                f"no tenant {tenant!r}; tenants: {', '.join(names) or '(none)'}",
                "create it with `feilun tenants create NAME`",
            )
        return Tenant(id=row.id, name=row.name, created_at=row.created_at)

    # --- keys ----------------------------------------------------------------------------
    def create_key(
        self,
        tenant: str,
        models: Sequence[str] | None = None,
        expires_in: timedelta | str | None = None,
        is_admin: bool = False,
        actor: str | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key of `tenant`: its secret (shown once, never stored) and its listing."""
        owner = self.get_tenant(tenant)
        allowed = _clean_models(models)
        if isinstance(expires_in, str):
            expires_in = parse_duration(expires_in)
        if expires_in is not None and expires_in <= timedelta(0):
            raise ConfigError(f"expires_in={expires_in} must be positive", "e.g. 30d")
        now = self._clock()
        for _ in range(5):  # a prefix collision is a 1-in-4-billion event per existing key
            prefix = KEY_PREFIX + secrets.token_hex(4)
            secret = prefix + secrets.token_urlsafe(32)
            key = ApiKey(
                prefix=prefix,
                tenant_id=owner.id,
                tenant_name=owner.name,
                models=allowed,
                is_admin=is_admin,
                created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
                revoked_at=None,
            )
            with self._db.session() as session:
                if session.execute(
                    sa.select(api_keys.c.id).where(api_keys.c.prefix == prefix)
                ).first():
                    continue
                session.execute(
                    sa.insert(api_keys).values(
                        id=new_id("key"),
                        tenant_id=owner.id,
                        prefix=prefix,
                        secret_hash=hash_secret(secret),
                        models=list(allowed) if allowed is not None else None,
                        is_admin=is_admin,
                        created_at=now,
                        expires_at=key.expires_at,
                        revoked_at=None,
                    )
                )
                self._record(session, actor, "key.created", prefix, _key_details(key))
            return secret, key
        raise ConfigError("could not find a free key prefix after 5 tries", "retry")

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Keys of one tenant (name or id), or of all, oldest first."""
        query = _key_query().order_by(api_keys.c.created_at, api_keys.c.prefix)
        if tenant is not None:
            query = query.where(api_keys.c.tenant_id == self.get_tenant(tenant).id)
        with self._db.session(is_read_only=True) as session:
            return [_key_of(row) for row in session.execute(query).all()]

    def find_key(self, prefix: str) -> tuple[ApiKey, str] | None:
        """The key with this prefix and its secret hash, or None."""
        with self._db.session(is_read_only=True) as session:
            row = session.execute(_key_query().where(api_keys.c.prefix == prefix)).first()
        return (_key_of(row), row.secret_hash) if row is not None else None

    def revoke_key(self, prefix: str, actor: str | None = None) -> ApiKey:
        """Revoke a key at once (revoking twice keeps the first time)."""
        with self._db.session() as session:
            update = (
                sa.update(api_keys)
                .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
            if session.connection().execute(update).rowcount:
                self._record(session, actor, "key.revoked", prefix)
        found = self.find_key(prefix)
        if found is None:
            raise NotFound(
                f"no API key with prefix {prefix!r}",
                "list the keys with `feilun keys list --tenant T` (prefixes look like fl-1a2b3c4d)",
            )
        return found[0]

    # --- quotas and prices ---------------------------------------------------------------
    def set_quota(
        self,
        tenant: str,
        tokens_per_day: int | None,
        requests_per_minute: int | None,
        actor: str | None = None,
    ) -> Quota:
        """Replace a tenant's quota (None: unlimited)."""
        for name, value in (
            ("tokens_per_day", tokens_per_day),
            ("requests_per_minute", requests_per_minute),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value} must be ≥ 1", f"omit {name} for no limit")
        quota = Quota(self.get_tenant(tenant).id, tokens_per_day, requests_per_minute)
        with self._db.session() as session:
            session.execute(sa.delete(quotas).where(quotas.c.tenant_id == quota.tenant_id))
            session.execute(sa.insert(quotas).values(**asdict(quota)))
            self._record(session, actor, "quota.set", tenant, asdict(quota))
        return quota

    def get_quota(self, tenant_id: str) -> Quota:
        """A tenant's quota by id (unlimited when none was set)."""
        with self._db.session(is_read_only=True) as session:
            row = session.execute(sa.select(quotas).where(quotas.c.tenant_id == tenant_id)).first()
        if row is None:
            return Quota(tenant_id)
        return Quota(tenant_id, row.tokens_per_day, row.requests_per_minute)

    def set_price(
        self,
        model: str,
        input_per_1k: Decimal | str | float,
        output_per_1k: Decimal | str | float,
        actor: str | None = None,
    ) -> Price:
        """Set what 1000 input and output tokens of `model` cost (its name without @version)."""
        if not model.strip():
            raise ConfigError("model name is empty", "give the model's registered name or alias")
        price = Price(
            model.strip(),
            parse_money(input_per_1k, "input_per_1k"),
            parse_money(output_per_1k, "output_per_1k"),
        )
        with self._db.session() as session:
            session.execute(sa.delete(prices).where(prices.c.model == price.model))
            session.execute(sa.insert(prices).values(**asdict(price)))
            money = {
                "input_per_1k": str(price.input_per_1k),
                "output_per_1k": str(price.output_per_1k),
            }
            self._record(session, actor, "price.set", price.model, money)
        return price

    def get_price(self, model: str) -> Price | None:
        """The price of exactly this model name, or None."""
        with self._db.session(is_read_only=True) as session:
            row = session.execute(sa.select(prices).where(prices.c.model == model)).first()
        return Price(row.model, row.input_per_1k, row.output_per_1k) if row else None

    def list_prices(self) -> list[Price]:
        """Every price, by model."""
        with self._db.session(is_read_only=True) as session:
            rows = session.execute(sa.select(prices).order_by(prices.c.model)).all()
        return [Price(r.model, r.input_per_1k, r.output_per_1k) for r in rows]


def _clean_models(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    cleaned = tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not cleaned:
        raise ConfigError(
            "the key's model list is empty", "name at least one model, or omit it for all models"
        )
    return cleaned


def _key_details(key: ApiKey) -> dict[str, Any]:
    """What a key.created event says about the key (never its secret)."""
    details = key.to_json()
    return {name: details[name] for name in ("tenant_name", "models", "is_admin", "expires_at")}


def _key_query() -> sa.Select[Any]:
    return sa.select(api_keys, tenants.c.name.label("tenant_name")).join(
        tenants, tenants.c.id == api_keys.c.tenant_id
    )


def _key_of(row: Any) -> ApiKey:
    return ApiKey(
        prefix=row.prefix,
        tenant_id=row.tenant_id,
        tenant_name=row.tenant_name,
        models=tuple(row.models) if row.models is not None else None,
        is_admin=bool(row.is_admin),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
