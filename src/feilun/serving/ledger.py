"""The gateway's `Ledger`: API-key authentication, admission under quotas, exact metering.

Admission reserves `reserve_tokens` against the tenant's daily counter in the limiter (seeded
from the usage table, so billed + reserved ≤ quota, atomically). `settle` writes the usage row
and the trace in ONE transaction, once per trace id, then gives back what was not used.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from feilun.core.blocking import WouldBlock, ensure_may_block
from feilun.core.caching import TtlCache
from feilun.core.errors import ConfigError, QuotaExceeded
from feilun.core.records import new_id, utc_now
from feilun.serving.accounts import (
    KEY_PREFIX,
    PREFIX_LENGTH,
    PREFIX_PATTERN,
    Accounts,
    ApiKey,
    Quota,
    hash_secret,
)
from feilun.serving.errors import AuthenticationFailed, PermissionDenied
from feilun.serving.gateway import Admission, Outcome, Principal
from feilun.serving.limits import Limiter
from feilun.serving.reads import TraceRow, UsageRow, get_trace, list_traces, usage_report
from feilun.store.database import Database
from feilun.store.deliveries import MIN_RETENTION, kept_traces
from feilun.store.schema import COST_TYPE, prices, traces, usage

logger = logging.getLogger(__name__)

__all__ = ["SqlLedger", "TraceRow", "UsageRow"]

# A revoked key, a changed quota or price goes unnoticed for at most twice this: an entry past
# it is served once more while a thread reloads it (`TtlCache.get_or_refresh`).
CACHE_TTL_S = 0.5
_COST_QUANTUM = Decimal(1).scaleb(-COST_TYPE.scale) if COST_TYPE.scale else Decimal(1)
_DUMMY_HASH = hash_secret("feilun-no-such-key")
_SCHEME = "Bearer"


@dataclass(frozen=True)
class _Reservation:
    counter: str | None  # limiter key of the tenant's daily token counter; None: no quota
    tokens: int
    day: str


class SqlLedger:
    """Ledger over the metadata database and a Limiter (in-process or Redis)."""

    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        limiter: Limiter,
        clock: Callable[[], datetime] = utc_now,
        cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self._limiter = limiter
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: TtlCache[str, ApiKey] = TtlCache(cache_ttl_s)  # by secret hash
        self._quotas: TtlCache[str, Quota] = TtlCache(cache_ttl_s)  # by tenant id
        # (served ref, requested name) → (input, output) price per 1k tokens; None: free
        self._prices: TtlCache[tuple[str, str], tuple[tuple[Decimal, Decimal] | None]] = TtlCache(
            cache_ttl_s
        )
        self._pending: dict[str, _Reservation] = {}

    @property
    def accounts(self) -> Accounts:
        """The tenants, keys, quotas and prices this ledger authenticates and bills against."""
        return self._accounts

    # --- authenticate ---------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization: Bearer <key>` header; AuthenticationFailed if not."""
        token = _bearer_token(authorization)
        digest = hash_secret(token)
        key = self._keys.get_or_refresh(digest, lambda: self._lookup(token, digest))
        now = self._clock()
        if key.revoked_at is not None:
            raise AuthenticationFailed(
                f"API key {key.prefix} was revoked at {key.revoked_at.isoformat()}",
                f"create a new key with `feilun keys create --tenant {key.tenant_name}`",
            )
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationFailed(
                f"API key {key.prefix} expired at {key.expires_at.isoformat()}",
                f"create a new key with `feilun keys create --tenant {key.tenant_name}`",
            )
        return Principal(
            tenant_id=key.tenant_id,
            tenant_name=key.tenant_name,
            key_prefix=key.prefix,
            models=key.models,
            is_admin=key.is_admin,
        )

    def _lookup(self, token: str, digest: str) -> ApiKey:
        prefix = token[:PREFIX_LENGTH] if token.startswith(KEY_PREFIX) else ""
        found = self._accounts.find_key(prefix) if PREFIX_PATTERN.fullmatch(prefix) else None
        # Compare even when nothing was found, so timing does not tell which prefixes exist.
        expected = found[1] if found else _DUMMY_HASH
        if not hmac.compare_digest(expected, digest) or found is None:
            shown = f" {prefix}…" if PREFIX_PATTERN.fullmatch(prefix) else ""
            raise AuthenticationFailed(
                f"invalid API key{shown}: no such key",
                "check the key you were given (it is shown only once at creation) or ask an "
                "admin for a new one",
            )
        return found[0]

    # --- admit ----------------------------------------------------------------------------
    def admit(self, principal: Principal, model: str, reserve_tokens: int) -> Admission:
        """Check the model is allowed, take a rate slot, reserve tokens under the daily quota."""
        if principal.models is not None and not _is_allowed(model, principal.models):
            raise PermissionDenied(
                f"API key {principal.key_prefix} may not use model {model!r}; it may use: "
                f"{', '.join(principal.models)}",
                "use one of those models, or ask an admin for a key that allows this one",
            )
        quota = self._quota(principal.tenant_id)
        now = self._clock()
        day = now.date().isoformat()
        counter = None
        if quota.tokens_per_day is not None:
            counter = f"tokens:{principal.tenant_id}:{day}"
            self._reserve(principal, quota.tokens_per_day, counter, reserve_tokens, now)
        if quota.requests_per_minute is not None:
            # After the token reservation, so a request refused for tokens takes no rate slot.
            wait_s = self._limiter.hit_rate(
                f"rate:{principal.tenant_id}", quota.requests_per_minute
            )
            if wait_s is not None:
                if counter is not None:
                    self._limiter.release(counter, reserve_tokens)
                raise _over(
                    f"tenant {principal.tenant_name} is over its rate limit of "
                    f"{quota.requests_per_minute} requests per minute",
                    f"retry in {wait_s:.1f} s, or raise the limit with `feilun quotas set`",
                    wait_s,
                )
        admission = Admission(
            principal=principal,
            model=model,
            reserved_tokens=reserve_tokens,
            trace_id=new_id("trc"),
            started_at=time.perf_counter(),
        )
        with self._lock:
            self._pending[admission.trace_id] = _Reservation(counter, reserve_tokens, day)
        return admission

    def _reserve(
        self, principal: Principal, quota: int, counter: str, tokens: int, now: datetime
    ) -> None:
        day = now.date().isoformat()
        until_tomorrow_s = _seconds_to_next_day(now)
        if tokens > quota:
            raise _over(
                f"this request may use {tokens} tokens (prompt + max_tokens × n), more than "
                f"tenant {principal.tenant_name}'s whole daily quota of {quota}",
                "lower max_tokens (or n), or raise the quota with `feilun quotas set`",
                until_tomorrow_s,
            )
        is_taken = self._limiter.reserve(
            counter, tokens, quota, lambda: self.used_tokens(principal.tenant_id, day)
        )
        if not is_taken:
            raise _over(
                f"tenant {principal.tenant_name} is over its daily quota of {quota} tokens "
                f"(this request reserves {tokens}: prompt + max_tokens × n)",
                "retry after 00:00 UTC, lower max_tokens, or raise the quota with "
                "`feilun quotas set`",
                until_tomorrow_s,
            )

    def used_tokens(self, tenant_id: str, day: str) -> int:
        """Prompt + completion tokens billed to a tenant on one UTC day (YYYY-MM-DD)."""
        total = sa.func.coalesce(sa.func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0)
        query = sa.select(total).where(usage.c.tenant_id == tenant_id, usage.c.day == day)
        with self._db.session(is_read_only=True) as session:
            return int(session.execute(query).scalar_one())

    # --- settle ---------------------------------------------------------------------------
    def settle(self, admission: Admission, outcome: Outcome) -> None:
        """Write usage and trace in one transaction (once per trace), then release the rest.

        Nothing changes before the write, so a WouldBlock from it (see `core.blocking`) leaves
        the settle to be run again in a thread.
        """
        if not self._limiter.is_local:
            ensure_may_block()  # releasing the reservation is a round trip
        with self._lock:
            reservation = self._pending.get(admission.trace_id)
        day = reservation.day if reservation else self._clock().date().isoformat()
        try:
            is_billed = self._write(admission, outcome, day)
        except WouldBlock:
            raise
        except BaseException:
            self._release(admission, reservation, 0, day)
            raise
        used = outcome.prompt_tokens + outcome.completion_tokens
        self._release(admission, reservation, used if is_billed else 0, day)

    def _release(
        self, admission: Admission, reservation: _Reservation | None, billed: int, day: str
    ) -> None:
        """Give back what was reserved but not billed; charge any overrun."""
        with self._lock:
            self._pending.pop(admission.trace_id, None)
        if reservation is None or reservation.counter is None:
            return
        unused = reservation.tokens - billed
        if unused > 0:
            self._limiter.release(reservation.counter, unused)
        elif unused < 0:
            tenant_id = admission.principal.tenant_id
            self._limiter.reserve(
                reservation.counter, -unused, None, lambda: self.used_tokens(tenant_id, day)
            )

    def _write(self, admission: Admission, outcome: Outcome, day: str) -> bool:
        """Insert the usage row and the trace; False when this trace was already settled."""
        trace_id = admission.trace_id
        principal = admission.principal
        now = self._clock()
        latency_ms = (time.perf_counter() - admission.started_at) * 1000
        shared = {
            "tenant_id": principal.tenant_id,
            "key_prefix": principal.key_prefix,
            "model": outcome.model,
            "adapter": outcome.adapter,
            "endpoint": outcome.endpoint,
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "status": outcome.status,
            "created_at": now,
        }
        cost = self._cost(outcome, admission.model)
        try:
            # No "already settled?" read first: the unique trace_id makes a second insert fail.
            self._db.insert_rows(
                [
                    (
                        usage,
                        {
                            "id": new_id("use"),
                            "trace_id": trace_id,
                            "cost": cost,
                            "usage_source": outcome.usage_source,
                            "day": day,
                            **shared,
                        },
                    ),
                    (
                        traces,
                        {
                            "id": trace_id,
                            "request": _jsonable(outcome.request),
                            "response": _jsonable(outcome.response),
                            "latency_ms": latency_ms,
                            **shared,
                        },
                    ),
                ]
            )
        except sa.exc.IntegrityError:
            # Two settles of one trace raced; the first one's rows stand.
            with self._db.session(is_read_only=True) as session:
                if _is_settled(session, trace_id):
                    return False
            raise
        return True

    # --- reads ----------------------------------------------------------------------------
    def usage_report(
        self, tenant_id: str, since: str | date, until: str | date | None = None
    ) -> list[UsageRow]:
        """Requests, tokens and cost per UTC day and model, `since`..`until` inclusive."""
        return usage_report(self._db, tenant_id, since, until)

    def list_traces(self, tenant_id: str | None, limit: int = 50) -> list[TraceRow]:
        """The newest traces, of one tenant or (None) of all."""
        return list_traces(self._db, tenant_id, limit)

    def get_trace(self, trace_id: str, tenant_id: str | None) -> TraceRow:
        """One trace; with a tenant given, another tenant's trace is NotFound."""
        return get_trace(self._db, trace_id, tenant_id)

    # --- caches ---------------------------------------------------------------------------
    def _quota(self, tenant_id: str) -> Quota:
        return self._quotas.get_or_refresh(tenant_id, lambda: self._accounts.get_quota(tenant_id))

    def _load_price(self, model: str, requested: str) -> tuple[Decimal, Decimal] | None:
        with self._db.session(is_read_only=True) as session:
            return _price(session, model, requested)

    def _cost(self, outcome: Outcome, requested: str) -> Decimal:
        key = (outcome.model, requested)
        (price,) = self._prices.get_or_refresh(key, lambda: (self._load_price(*key),))
        if price is None:
            return Decimal(0)
        input_per_1k, output_per_1k = price
        cost = (
            Decimal(outcome.prompt_tokens) * input_per_1k
            + Decimal(outcome.completion_tokens) * output_per_1k
        ) / 1000
        return cost.quantize(_COST_QUANTUM)


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise AuthenticationFailed(
            "missing API key: the request has no Authorization header",
            "send `Authorization: Bearer <key>` (create a key with `feilun keys create`)",
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != _SCHEME.lower() or not token.strip():
        # The header may hold a bare secret: name the scheme only when it looks like one.
        shown = f"scheme {scheme!r}" if scheme.isalpha() and len(scheme) <= 10 else "no scheme"
        raise AuthenticationFailed(
            f"the Authorization header must be `Bearer <key>`, got {shown}",
            "send `Authorization: Bearer <key>`",
        )
    return token.strip()


def _is_allowed(model: str, allowed: tuple[str, ...]) -> bool:
    """Allowed by exact name, or as a version of an allowed name (`tiny@2` under `tiny`)."""
    return model in allowed or model.split("@", 1)[0] in allowed


def _over(message: str, fix: str, retry_after_s: float) -> QuotaExceeded:
    error = QuotaExceeded(message, fix)
    error.retry_after_s = float(retry_after_s)  # type: ignore[attr-defined]
    return error


def _seconds_to_next_day(now: datetime) -> float:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((tomorrow - now).total_seconds(), 1.0)


def _is_settled(session: Any, trace_id: str) -> bool:
    query = sa.select(usage.c.id).where(usage.c.trace_id == trace_id)
    return session.execute(query).first() is not None


def _price_names(served: str, requested: str) -> list[str]:
    """Names to look a price up by, most specific first: `m@1:a@2`, `m:a`, requested, `m`."""
    unversioned = ":".join(part.split("@", 1)[0] for part in served.split(":"))
    base = unversioned.split(":", 1)[0]
    return list(dict.fromkeys([served, unversioned, requested, base]))


def _price(session: Any, served: str, requested: str) -> tuple[Decimal, Decimal] | None:
    """(input, output) price per 1k tokens of the most specific name priced, or None."""
    names = _price_names(served, requested)
    rows = {r.model: r for r in session.execute(sa.select(prices).where(prices.c.model.in_(names)))}
    row = next((rows[name] for name in names if name in rows), None)
    return None if row is None else (Decimal(row.input_per_1k), Decimal(row.output_per_1k))


def purge_traces(
    db: Database, older_than: timedelta, is_forced: bool = False, now: datetime | None = None
) -> int:
    """Delete traces created more than `older_than` ago; the number deleted.

    Usage rows stay (billing needs them). Traces are the delivery log of who received which
    output, kept at least `MIN_RETENTION` (the delivery log's): a shorter cutoff needs
    `is_forced`. A trace an unlabelled API delivery younger than that names is kept even then.
    """
    if older_than < MIN_RETENTION and not is_forced:
        raise ConfigError(
            f"--older-than {older_than.days}d is under the delivery-log minimum of "
            f"{MIN_RETENTION.days} days (GB 45438 / the labelling measures keep records of "
            "who received unlabelled output at least 6 months)",
            f"use --older-than {MIN_RETENTION.days}d or more, or add --force if your "
            "records are kept elsewhere",
        )
    now = now or utc_now()
    old = sa.and_(traces.c.created_at < now - older_than, traces.c.id.not_in(kept_traces(now)))
    with db.begin() as connection:
        result = connection.execute(sa.delete(traces).where(old))
    return int(result.rowcount or 0)


def _jsonable(value: dict[str, Any]) -> Any:
    """A JSON round trip, so odd values (bytes, Decimals) are stored as text, not rejected."""
    try:
        return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:  # e.g. an integer over 64 bits
        return json.loads(json.dumps(value, ensure_ascii=False, default=str))
