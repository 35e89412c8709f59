"""The tamper-evident audit chain: each event carries the keyed hash of itself and its predecessor.

`hash = HMAC-SHA256(key, canonical JSON of (seq, at, actor, action, target, details, prev_hash))`,
so editing an event breaks its own hash, and deleting or reordering events breaks the `seq`
sequence or the `prev_hash` links at the first affected event. Without the key nobody can
recompute the chain after an edit. Every `checkpoint_every` events (and on demand) `AuditLog`
signs (seq, hash) with a second key, so even a re-hash with a stolen chain key, or a deleted
tail, shows up at the checkpoint. Storage is an `AuditStore` (store/audit.py over the metadata
database), bound to the caller's transaction so an event commits with the change it records.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dataclasses_replace
from datetime import UTC, datetime
from typing import Any, Protocol

from feilun.core.errors import ConfigError

GENESIS = "0" * 64  # the prev_hash of the first event
DEFAULT_CHECKPOINT_EVERY = 100
_APPEND_ATTEMPTS = 100  # each lost race means another writer appended: progress is certain


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
    checkpoints: int = 0  # signed checkpoints that matched


def verify_chain(key: bytes, events: Iterable[AuditEvent]) -> ChainCheck:
    """Walk the events in storage order; stop at the first edited, missing or misplaced one."""
    previous: AuditEvent | None = None
    checked = 0
    for event in events:
        expected = previous.seq + 1 if previous else 1
        if not hmac.compare_digest(event.hash, event_hash(key, event)):
            return _bad(
                checked,
                event.seq,
                f"event {event.seq} was edited or moved (its hash no longer matches)",
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


@dataclass(frozen=True)
class AuditKeys:
    """The chain's HMAC key and the separate checkpoint-signing key."""

    chain: bytes
    checkpoint: bytes


def derive_keys(deployment_key: bytes) -> AuditKeys:
    """Both audit keys from the deployment's secret, each under its own derivation label."""
    return AuditKeys(
        chain=hmac.new(deployment_key, b"feilun/audit/chain/v1", hashlib.sha256).digest(),
        checkpoint=hmac.new(deployment_key, b"feilun/audit/checkpoint/v1", hashlib.sha256).digest(),
    )


class AuditStore(Protocol):
    """Where the chain lives; rows are plain mappings with `AuditEvent`'s fields.

    An implementation is bound to one transaction: what it inserts commits or rolls back with
    the change being recorded.
    """

    def tip(self) -> Mapping[str, Any] | None:
        """The event with the highest seq, or None for an empty log."""
        ...

    def insert(self, row: Mapping[str, Any]) -> bool:
        """Insert an event; False (nothing written) when another writer took its seq."""
        ...

    def events(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[Mapping[str, Any]]:
        """Events by seq, optionally of one action and target, at or after `since` (ISO)."""
        ...

    def checkpoints(self) -> Sequence[Mapping[str, Any]]:
        """Every checkpoint (`seq`, `hash`, `at`, `signature`), by seq."""
        ...

    def insert_checkpoint(self, row: Mapping[str, Any]) -> bool:
        """Insert a checkpoint; False when one already pins that seq."""
        ...


@dataclass(frozen=True)
class Checkpoint:
    """A signed pin of the chain at `seq`: its event's hash, when, and the signature."""

    seq: int
    hash: str
    at: str
    signature: str = ""


def local_actor() -> str:
    """The actor of a change made on this machine (the CLI): `local:<OS user>`."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return "local:unknown"


def event_of(row: Mapping[str, Any]) -> AuditEvent:
    """An `AuditEvent` from a stored row."""
    return AuditEvent(**{name: row[name] for name in AuditEvent.__dataclass_fields__})


class AuditLog:
    """Appends to, checkpoints and verifies an `AuditStore` with a deployment's keys."""

    def __init__(
        self,
        keys: AuditKeys,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if checkpoint_every < 1:
            raise ConfigError(
                f"audit_checkpoint_every={checkpoint_every} must be ≥ 1", "e.g. 100 (the default)"
            )
        self.keys = keys
        self.checkpoint_every = checkpoint_every
        self._clock = clock

    def append(
        self,
        store: AuditStore,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Chain one event onto the tip (retrying on a new tip when a writer raced us)."""
        # JSON-native details hash the same before and after a round trip through the database.
        clean = json.loads(json.dumps(dict(details or {}), ensure_ascii=False))
        for _ in range(_APPEND_ATTEMPTS):
            tip = store.tip()
            previous = event_of(tip) if tip is not None else None
            event = next_event(
                self.keys.chain, previous, actor, action, target, clean, self._clock()
            )
            if store.insert(asdict(event)):
                if event.seq % self.checkpoint_every == 0:
                    self._sign(store, event)
                return event
        raise ConfigError(
            f"could not append {action!r} to the audit log after {_APPEND_ATTEMPTS} attempts",
            "too many concurrent writers; retry",
        )

    def checkpoint(self, store: AuditStore) -> Checkpoint | None:
        """Sign the current tip (None for an empty log); an existing checkpoint is returned."""
        tip = store.tip()
        if tip is None:
            return None
        for row in store.checkpoints():
            if row["seq"] == tip["seq"]:
                return Checkpoint(**row)
        return self._sign(store, event_of(tip))

    def _sign(self, store: AuditStore, event: AuditEvent) -> Checkpoint:
        unsigned = Checkpoint(event.seq, event.hash, self._clock().astimezone(UTC).isoformat())
        signed = Checkpoint(**{**asdict(unsigned), "signature": self._signature(unsigned)})
        store.insert_checkpoint(asdict(signed))
        return signed

    def _signature(self, checkpoint: Checkpoint) -> str:
        message = json.dumps([checkpoint.seq, checkpoint.hash, checkpoint.at]).encode()
        return hmac.new(self.keys.checkpoint, message, hashlib.sha256).hexdigest()

    def verify(self, store: AuditStore) -> ChainCheck:
        """Check the chain and every checkpoint; the first bad record and what is wrong."""
        pins = [Checkpoint(**row) for row in store.checkpoints()]
        for pin in pins:
            if not hmac.compare_digest(pin.signature, self._signature(pin)):
                return _bad(
                    0, pin.seq, f"checkpoint {pin.seq} has a bad signature: forged or edited"
                )
        pinned = {pin.seq for pin in pins}
        hashes: dict[int, str] = {}

        def watched() -> Iterator[AuditEvent]:
            for row in store.events():
                event = event_of(row)
                if event.seq in pinned:
                    hashes[event.seq] = event.hash
                yield event

        chain = verify_chain(self.keys.chain, watched())
        good = 0  # the seq of the last checkpoint that matched
        for number, pin in enumerate(pins):
            if pin.seq > chain.checked:
                if not chain.is_valid:
                    break  # the chain's own first fault comes before this checkpoint
                return _bad(
                    chain.checked,
                    chain.checked + 1,
                    f"event(s) {chain.checked + 1}–{pin.seq} and any after were deleted: the log "
                    f"ends at {chain.checked}, but checkpoint {pin.seq} pins a later event",
                )
            if hashes.get(pin.seq) != pin.hash:
                return _bad(
                    good,
                    good + 1,
                    f"event(s) {good + 1}–{pin.seq} were rewritten and re-hashed: checkpoint "
                    f"{pin.seq} no longer matches (the first change is in that range)",
                )
            good = pin.seq
            chain = dataclasses_replace(chain, checkpoints=number + 1)
        return chain
