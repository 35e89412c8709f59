"""The delivery log: who received generated output without its AIGC labels, kept ≥ 180 days.

The labelling measures (GB 45438-2025 and the 标识办法, art. 9) let a provider hand over
content without its labels only on the recipient's request, and keep a log of those deliveries
for at least six months. One row per delivery; `purge_deliveries` refuses any cutoff under
`MIN_RETENTION`, and the traces that rows of the API channel name are kept as long (see
`serving.ledger.purge_traces`). The table (`schema.deliveries`) is created by migration 0004.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from feilun.core.errors import ConfigError
from feilun.store.database import Database
from feilun.store.schema import deliveries

MIN_RETENTION = timedelta(days=180)
Channel = Literal["api", "export", "cli"]
CHANNELS: tuple[Channel, ...] = ("api", "export", "cli")


@dataclass(frozen=True)
class Delivery:
    """One delivery of output without (some of) its labels."""

    tenant: str
    recipient: str
    channel: Channel
    what: str
    has_explicit: bool
    has_implicit: bool
    reason: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: f"dlv_{secrets.token_hex(8)}")

    def to_json(self) -> dict[str, Any]:
        """Plain values (ISO time) for JSON output."""
        return asdict(self) | {"at": self.at.isoformat(timespec="seconds")}


def record_delivery(db: Database, delivery: Delivery) -> Delivery:
    """Store one delivery in its own transaction; ConfigError for an unknown channel."""
    if delivery.channel not in CHANNELS:
        raise ConfigError(
            f"delivery channel {delivery.channel!r} is unknown", f"use one of {list(CHANNELS)}"
        )
    if not delivery.reason.strip():
        raise ConfigError("an unlabelled delivery needs a reason", "say why it goes unlabelled")
    with db.begin() as connection:
        connection.execute(sa.insert(deliveries).values(**asdict(delivery)))
    return delivery


def list_deliveries(
    db: Database, since: datetime | None = None, tenant: str | None = None
) -> list[Delivery]:
    """Deliveries, newest first, optionally since a time and for one tenant (by name)."""
    query = sa.select(deliveries).order_by(deliveries.c.at.desc(), deliveries.c.id)
    if since is not None:
        query = query.where(deliveries.c.at >= since)
    if tenant is not None:
        query = query.where(deliveries.c.tenant == tenant)
    with db.session(is_read_only=True) as session:
        rows = session.execute(query).mappings().all()
    return [Delivery(**dict(row)) for row in rows]


def kept_traces(now: datetime) -> sa.Select[tuple[str]]:
    """The trace ids API deliveries younger than `MIN_RETENTION` name: never purged."""
    return sa.select(deliveries.c.what).where(
        deliveries.c.channel == "api", deliveries.c.at >= now - MIN_RETENTION
    )


def purge_deliveries(db: Database, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete deliveries older than `older_than` (at least `MIN_RETENTION`); the number deleted."""
    if older_than < MIN_RETENTION:
        raise ConfigError(
            f"--older-than {older_than.days}d is under the delivery log's minimum of "
            f"{MIN_RETENTION.days} days: the labelling measures (标识办法 art. 9) keep records "
            "of who received unlabelled output at least six months, with no exception",
            f"use --older-than {MIN_RETENTION.days}d or more",
        )
    cutoff = (now or datetime.now(UTC)) - older_than
    with db.begin() as connection:
        result = connection.execute(sa.delete(deliveries).where(deliveries.c.at < cutoff))
    return int(result.rowcount or 0)
