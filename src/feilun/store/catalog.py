"""`SqlCatalog`: the `Catalog` Protocol over the metadata database.

A record is stored as its full JSON dump plus query columns, and comes back as the same
pydantic class with the same id, created_at and content_hash. Each call is one transaction.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
import sqlalchemy as sa
from sqlalchemy.orm import Session

from feilun.core.errors import ConfigError, NotFound, WorkspaceError
from feilun.core.protocols import Catalog
from feilun.core.records import RECORD_TYPES, Alias, Record
from feilun.store.database import Database
from feilun.store.schema import record_inputs, records

logger = logging.getLogger(__name__)

#: What `SqlCatalog.save` does when another record holds the version: see `save`.
IfTaken = Literal["fail", "next", "replace"]
_MOVABLE_KINDS = frozenset({Alias.kind})  # saving one again moves it: last writer wins
_SAVE_ATTEMPTS = 8
_VERSIONED_REF = re.compile(r"^(?P<name>[^@\s]+?)(?:@(?P<version>\d+|latest))?$")


def _record_type(kind: str) -> type[Record]:
    record_type = RECORD_TYPES.get(kind)
    if record_type is None:
        raise ConfigError(
            f"unknown record kind {kind!r}; known kinds: {', '.join(sorted(RECORD_TYPES))}",
            "use one of those, or add the record class to feilun.core.records.RECORD_TYPES",
        )
    return record_type


def parse_versioned_ref(ref: str, noun: str) -> tuple[str, int | None]:
    """Split `name`, `name@3` or `name@latest` into the name and the version (None: latest)."""
    match = _VERSIONED_REF.match(ref.strip())
    if match is None:
        raise ConfigError(
            f"{noun} reference {ref!r} is malformed", "write `name`, `name@2` or `name@latest`"
        )
    version = match.group("version")
    return match.group("name"), None if version in (None, "latest") else int(version)


def resolve_version(catalog: Catalog, kind: str, ref: str, *, noun: str, hint: str) -> Record:
    """The record of `kind` that `name`, `name@3` or `name@latest` names.

    NotFound lists the names of `kind` (with `hint`, how to list or make one) when the name is
    unknown, and the name's versions when the version is.
    """
    name, version = parse_versioned_ref(ref, noun)
    versions = catalog.find(kind, name)
    if not versions:
        known = sorted({record.name for record in catalog.find(kind)})
        raise NotFound(f"no {noun} named {name!r}; {noun}s: {', '.join(known) or 'none'}", hint)
    if version is None:
        return versions[0]
    for record in versions:
        if record.version == version:
            return record
    listed = ", ".join(str(record.version) for record in reversed(versions))
    raise NotFound(
        f"{noun} {name!r} has no version {version}; versions: {listed}",
        f"use one of those, or {name}@latest",
    )


class SqlCatalog:
    """Records in a SQL database (SQLite or PostgreSQL) migrated to the head revision."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, record: Record, *, if_taken: IfTaken | None = None) -> Record:
        """Store a record; return it as stored (with the version it got).

        A record's (kind, name, version) is written once: when another record holds it (say a
        concurrent writer took the same next version), `if_taken` decides. "fail", the default,
        raises ConfigError; "next" stores this one at the next free version; "replace" swaps the
        old record out in one transaction (the default for aliases, which are movable names).
        """
        kind = record.kind
        if _record_type(kind) is not type(record):
            raise ConfigError(
                f"{type(record).__name__} has kind {kind!r}, which is registered to "
                f"{_record_type(kind).__name__}; it could not be read back as itself",
                "give the class its own `kind` and add it to feilun.core.records.RECORD_TYPES",
            )
        mode = if_taken or ("replace" if kind in _MOVABLE_KINDS else "fail")
        for _ in range(_SAVE_ATTEMPTS):
            try:
                self._insert(record, is_replace=mode == "replace")
                return record
            except sa.exc.IntegrityError as e:
                if not self._is_version_taken(record):
                    raise  # not a version clash (an id saved twice is a bug)
                if mode == "fail":
                    raise ConfigError(
                        f"{kind} {record.ref} was saved by someone else meanwhile",
                        "run the command again; it will take the next version",
                    ) from e
                if mode == "next":
                    version = self.next_version(kind, record.name)
                    record = record.model_copy(update={"version": version})
        raise ConfigError(
            f"{kind} {record.ref} is still being saved by other writers "
            f"after {_SAVE_ATTEMPTS} attempts",
            "run the command again",
        )

    def _insert(self, record: Record, *, is_replace: bool) -> None:
        """Insert the record and its inputs in one transaction (replacing its version if asked)."""
        with self.db.session() as session:
            connection = session.connection()
            if is_replace:
                connection.execute(sa.delete(records).where(_same_version(record)))
            connection.execute(
                sa.insert(records).values(
                    id=record.id,
                    kind=record.kind,
                    name=record.name,
                    version=record.version,
                    created_at=record.created_at,
                    content_hash=record.content_hash,
                    data=record.model_dump(mode="json"),
                )
            )
            input_ids = list(dict.fromkeys(record.inputs))  # keep order, drop repeats
            if input_ids:
                connection.execute(
                    sa.insert(record_inputs),
                    [{"record_id": record.id, "input_id": i} for i in input_ids],
                )
        logger.debug("saved %s %s (%s)", record.kind, record.ref, record.id)

    def _is_version_taken(self, record: Record) -> bool:
        """Whether another record holds the record's (kind, name, version) and its id is free."""
        query = sa.select(records.c.id).where(
            sa.or_(records.c.id == record.id, _same_version(record))
        )
        with self.db.session(is_read_only=True) as session:
            holders = set(session.execute(query).scalars())
        return bool(holders) and record.id not in holders

    def find(self, kind: str, name: str | None = None, version: int | None = None) -> list[Record]:
        """Return records of `kind` (optionally one name, one version), newest version first.

        Ties (same version, different names) go newest created_at first, then by id.
        """
        record_type = _record_type(kind)
        query = sa.select(records.c.id, records.c.data).where(records.c.kind == kind)
        if name is not None:
            query = query.where(records.c.name == name)
        if version is not None:
            query = query.where(records.c.version == version)
        query = query.order_by(
            records.c.version.desc(), records.c.created_at.desc(), records.c.id.desc()
        )
        with self.db.session(is_read_only=True) as session:
            rows = session.execute(query).all()
        return [_load(record_type, row.id, row.data) for row in rows]

    def latest(
        self,
        kind: str,
        *,
        name_prefix: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> list[Record]:
        """Return the highest version of each name of `kind`, ordered by name.

        `name_prefix` keeps names that start with it (exactly, case-sensitive); `fields` keeps
        records whose top-level string fields equal the given values (on the latest version).
        """
        record_type = _record_type(kind)
        highest = (
            sa.select(records.c.name, sa.func.max(records.c.version).label("version"))
            .where(records.c.kind == kind, *_prefix_conditions(name_prefix))
            .group_by(records.c.name)
            .subquery()
        )
        query = (
            sa.select(records.c.id, records.c.data)
            .join(
                highest,
                sa.and_(records.c.name == highest.c.name, records.c.version == highest.c.version),
            )
            .where(records.c.kind == kind)
        )
        for field, value in (fields or {}).items():
            query = query.where(records.c.data[field].as_string() == value)
        with self.db.session(is_read_only=True) as session:
            rows = session.execute(query).all()
        found = [_load(record_type, row.id, row.data) for row in rows]
        return sorted(found, key=lambda record: record.name)  # code-point order on every backend

    def distinct(self, kind: str, field: str) -> list[str]:
        """Return the distinct non-empty values of a top-level string field of `kind`, sorted."""
        _record_type(kind)
        value = records.c.data[field].as_string()
        query = sa.select(value).where(records.c.kind == kind).distinct()
        with self.db.session(is_read_only=True) as session:
            values = session.execute(query).scalars().all()
        return sorted(v for v in values if v)

    def remove(self, kind: str, name: str) -> int:
        """Delete every version of `name` (their input rows too); return the number removed."""
        with self.db.session() as session:
            removed = (
                session.connection()
                .execute(sa.delete(records).where(records.c.kind == kind, records.c.name == name))
                .rowcount
            )
        logger.debug("removed %d versions of %s %s", removed, kind, name)
        return int(removed)

    def next_version(self, kind: str, name: str) -> int:
        """Return the version a new `name` should take: 1, or one past the highest."""
        query = sa.select(sa.func.max(records.c.version)).where(
            records.c.kind == kind, records.c.name == name
        )
        with self.db.session(is_read_only=True) as session:
            highest = session.execute(query).scalar_one()
        return 1 if highest is None else int(highest) + 1

    def lineage(self, record_id: str) -> list[str]:
        """Return ids of every record `record_id` was made from, transitively, nearest first."""
        seen: dict[str, None] = {}
        frontier = [record_id]
        with self.db.session(is_read_only=True) as session:
            while frontier:
                found = _inputs_of(session, frontier)
                frontier = [i for i in found if i not in seen and i != record_id]
                seen.update(dict.fromkeys(frontier))
        return list(seen)


def _same_version(record: Record) -> sa.ColumnElement[bool]:
    return sa.and_(
        records.c.kind == record.kind,
        records.c.name == record.name,
        records.c.version == record.version,
    )


def _prefix_conditions(name_prefix: str | None) -> list[sa.ColumnElement[bool]]:
    if not name_prefix:
        return []
    # LIKE can use the (kind, name) index but is case-insensitive on SQLite; substr is exact.
    return [
        records.c.name.startswith(name_prefix, autoescape=True),
        sa.func.substr(records.c.name, 1, len(name_prefix)) == name_prefix,
    ]


def _inputs_of(session: Session, record_ids: list[str]) -> list[str]:
    query = (
        sa.select(record_inputs.c.input_id)
        .where(record_inputs.c.record_id.in_(record_ids))
        .distinct()
        .order_by(record_inputs.c.input_id)
    )
    return list(session.execute(query).scalars())


def _load(record_type: type[Record], record_id: str, data: Any) -> Record:
    try:
        # Validate as JSON, the mode it was dumped in, so every field type round-trips exactly.
        return record_type.model_validate_json(json.dumps(data))
    except pydantic.ValidationError as e:
        raise WorkspaceError(
            f"stored {record_type.kind} record {record_id} does not match this Feilun's "
            f"{record_type.__name__}: {e.error_count()} problem(s), first: {e.errors()[0]['msg']}",
            "upgrade with `pip install -U feilun` if a newer Feilun wrote it, else remove it",
        ) from e
