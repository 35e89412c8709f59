"""Reads of the usage ledger and the traces, always scoped to one tenant unless an admin asks.

Costs are summed in Python as Decimals: SQLite keeps NUMERIC as a float, so a SQL SUM there
could drift by a fraction of a cent, while each row's cost round-trips exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from feilun.core.errors import ConfigError, NotFound
from feilun.store.database import Database
from feilun.store.schema import traces, usage

MAX_TRACES = 1000


@dataclass(frozen=True)
class UsageRow:
    """What one tenant used of one model on one UTC day."""

    day: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields; the cost as a string, so it stays exact."""
        return {**asdict(self), "cost": str(self.cost)}


@dataclass(frozen=True)
class TraceRow:
    """One served request: what was asked, what was answered, by whom, at what cost in tokens."""

    id: str
    tenant_id: str
    key_prefix: str
    model: str
    adapter: str | None
    endpoint: str
    request: dict[str, Any]
    response: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    status: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields, the time as ISO 8601."""
        return {**asdict(self), "created_at": self.created_at.isoformat()}


def parse_day(value: str | date, what: str) -> str:
    """A UTC day as YYYY-MM-DD, naming the option when the value is not one."""
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError as e:
        raise ConfigError(f"{what} {value!r} is not a date", "write it as YYYY-MM-DD") from e


def usage_report(
    db: Database, tenant_id: str, since: str | date, until: str | date | None = None
) -> list[UsageRow]:
    """Requests, tokens and cost per UTC day and model, `since`..`until` (inclusive)."""
    first = parse_day(since, "since")
    query = sa.select(
        usage.c.day, usage.c.model, usage.c.prompt_tokens, usage.c.completion_tokens, usage.c.cost
    ).where(usage.c.tenant_id == tenant_id, usage.c.day >= first)
    if until is not None:
        last = parse_day(until, "until")
        if last < first:
            raise ConfigError(f"until {last} is before since {first}", "swap the two dates")
        query = query.where(usage.c.day <= last)
    totals: dict[tuple[str, str], list[Any]] = {}
    with db.session(is_read_only=True) as session:
        for row in session.execute(query):
            total = totals.setdefault((row.day, row.model), [0, 0, 0, Decimal(0)])
            total[0] += 1
            total[1] += row.prompt_tokens
            total[2] += row.completion_tokens
            total[3] += Decimal(row.cost)
    return [UsageRow(day, model, *values) for (day, model), values in sorted(totals.items())]


def list_traces(db: Database, tenant_id: str | None, limit: int = 50) -> list[TraceRow]:
    """The newest traces first, of one tenant or (None: admins only) of all."""
    if not 1 <= limit <= MAX_TRACES:
        raise ConfigError(f"limit={limit} is out of range", f"use 1 to {MAX_TRACES}")
    query = sa.select(traces).order_by(traces.c.created_at.desc(), traces.c.id.desc())
    if tenant_id is not None:
        query = query.where(traces.c.tenant_id == tenant_id)
    with db.session(is_read_only=True) as session:
        return [_trace_of(row) for row in session.execute(query.limit(limit))]


def get_trace(db: Database, trace_id: str, tenant_id: str | None) -> TraceRow:
    """One trace; another tenant's trace is NotFound exactly like a missing one."""
    query = sa.select(traces).where(traces.c.id == trace_id)
    if tenant_id is not None:
        query = query.where(traces.c.tenant_id == tenant_id)
    with db.session(is_read_only=True) as session:
        row = session.execute(query).first()
    if row is None:
        raise NotFound(
            f"no trace {trace_id!r}",
            "trace ids come from the x-feilun-trace-id header; list them with `feilun traces list`",
        )
    return _trace_of(row)


def _trace_of(row: Any) -> TraceRow:
    return TraceRow(**{column.name: getattr(row, column.name) for column in traces.columns})
