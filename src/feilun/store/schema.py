"""Tables of the metadata database, generic over record kinds.

`records.data` holds the full JSON dump of a record, so a record comes back exactly as saved;
the other columns exist to query by. Every change here needs a new hand-written migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Named constraints let later migrations (SQLite batch mode included) refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; records carry timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime, whatever the backend gave."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("content_hash", sa.String(), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.UniqueConstraint("kind", "name", "version"),
    sa.Index("ix_records_kind_name", "kind", "name"),
)

# One row per (record, input) pair: lineage is a graph walk over this table. input_id is not a
# foreign key, since an input may live outside the catalog or have been removed.
record_inputs = sa.Table(
    "record_inputs",
    metadata,
    sa.Column(
        "record_id",
        sa.String(),
        sa.ForeignKey("records.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("input_id", sa.String(), primary_key=True),
    sa.Index("ix_record_inputs_input_id", "input_id"),
)
