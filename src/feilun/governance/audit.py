"""The tamper-evident audit chain: each event carries the keyed hash of itself and its predecessor.

`hash = HMAC-SHA256(key, canonical JSON of (seq, at, actor, action, target, details, prev_hash))`,
so editing an event breaks its own hash, and deleting or reordering events breaks the `seq`
sequence or the `prev_hash` links at the first affected event. Without the key nobody can
recompute the chain after an edit. This module is the chain only; storage (an append-only
table, written in the same transaction as the change it records) is the caller's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64  # the prev_hash of the first event


@dataclass(frozen=True)
class AuditEvent:
    """One audit record: who did what to what, when, chained to the event before."""

    seq: int
    at: str  # ISO 8601, UTC
    actor: str
    action: str  # e.g. "moderation.block", "key.created", "model.promoted"
    target: str
    details: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""


def event_hash(key: bytes, event: AuditEvent) -> str:
    """The keyed hash of an event's fields (its own `hash` excluded)."""
    payload = [event.seq, event.at, event.actor, event.action, event.target, event.details]
    message = json.dumps([*payload, event.prev_hash], ensure_ascii=False, sort_keys=True)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def next_event(
    key: bytes,
    previous: AuditEvent | None,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """The event that follows `previous` (None for the first), with its hash filled in."""
    event = AuditEvent(
        seq=previous.seq + 1 if previous else 1,
        at=(at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        actor=actor,
        action=action,
        target=target,
        details=dict(details or {}),
        prev_hash=previous.hash if previous else GENESIS,
    )
    return AuditEvent(**{**event.__dict__, "hash": event_hash(key, event)})


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of verifying a chain: how many events were good, and the first bad one."""

    is_valid: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(key: bytes, events: Iterable[AuditEvent]) -> ChainCheck:
    """Walk the events in storage order; stop at the first edited, missing or misplaced one."""
    previous: AuditEvent | None = None
    checked = 0
    for event in events:
        expected = previous.seq + 1 if previous else 1
        if not hmac.compare_digest(event.hash, event_hash(key, event)):
            return _bad(
                checked, event.seq, f"event {event.seq} was edited (its hash no longer matches)"
            )
        if event.seq > expected:
            gap = f"{expected}" if event.seq == expected + 1 else f"{expected}–{event.seq - 1}"
            return _bad(checked, expected, f"event(s) {gap} were deleted (next is {event.seq})")
        if event.seq < expected:
            return _bad(
                checked, event.seq, f"event {event.seq} is out of order (after {expected - 1})"
            )
        if event.prev_hash != (previous.hash if previous else GENESIS):
            return _bad(
                checked, event.seq, f"event {event.seq} does not follow event {expected - 1}"
            )
        previous = event
        checked += 1
    return ChainCheck(True, checked)


def _bad(checked: int, seq: int, problem: str) -> ChainCheck:
    return ChainCheck(False, checked, seq, problem)
