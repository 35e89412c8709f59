"""`SqlAuditStore`: the audit chain's rows in `audit_events` and `audit_checkpoints`.

It is bound to the caller's session or connection, so an event commits or rolls back with the
change it records. `insert` runs in a SAVEPOINT: when a concurrent writer took the same seq
(the primary key), only the savepoint rolls back and the caller retries on the new tip.
Rows go in and out as plain dicts; the chain itself is governance/audit.py's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from feilun.store.schema import audit_checkpoints, audit_events

_EVENT_COLUMNS = ("seq", "at", "actor", "action", "target", "details", "prev_hash", "hash")
_CHECKPOINT_COLUMNS = ("seq", "hash", "at", "signature")
_BATCH = 1000


class SqlAuditStore:
    """The `AuditStore` Protocol (governance/audit.py) over one open transaction."""

    def __init__(self, bind: Session | Connection) -> None:
        self._bind = bind

    def tip(self) -> dict[str, Any] | None:
        """The event with the highest seq, or None."""
        query = sa.select(audit_events).order_by(audit_events.c.seq.desc()).limit(1)
        row = self._bind.execute(query).first()
        return _event(row) if row is not None else None

    def insert(self, row: Mapping[str, Any]) -> bool:
        """Insert an event; False when its seq is already taken (nothing is written)."""
        values = {name: row[name] for name in _EVENT_COLUMNS}
        return self._insert_new(audit_events, values)

    def events(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Events by seq (streamed in batches), filtered by action, target and `at` ≥ since."""
        query = sa.select(audit_events)
        if action is not None:
            query = query.where(audit_events.c.action == action)
        if target is not None:
            query = query.where(audit_events.c.target == target)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        order = audit_events.c.seq.desc() if newest_first else audit_events.c.seq
        query = query.order_by(order).limit(limit)
        result = self._bind.execute(query.execution_options(yield_per=_BATCH))
        for row in result:
            yield _event(row)

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint, by seq."""
        query = sa.select(audit_checkpoints).order_by(audit_checkpoints.c.seq)
        return [
            {name: getattr(row, name) for name in _CHECKPOINT_COLUMNS}
            for row in self._bind.execute(query)
        ]

    def insert_checkpoint(self, row: Mapping[str, Any]) -> bool:
        """Insert a checkpoint; False when one already pins its seq."""
        return self._insert_new(
            audit_checkpoints, {name: row[name] for name in _CHECKPOINT_COLUMNS}
        )

    def _insert_new(self, table: sa.Table, values: dict[str, Any]) -> bool:
        try:
            with self._bind.begin_nested():
                self._bind.execute(sa.insert(table).values(**values))
        except sa.exc.IntegrityError:
            taken = sa.select(table.c.seq).where(table.c.seq == values["seq"])
            if self._bind.execute(taken).first() is None:
                raise  # not a seq clash: a real constraint violation
            return False
        return True


def _event(row: Any) -> dict[str, Any]:
    event = {name: getattr(row, name) for name in _EVENT_COLUMNS}
    event["seq"] = int(event["seq"])
    return event
