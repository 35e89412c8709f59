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

# --- Serving: tenants, API keys, quotas, prices, the usage ledger and traces (migration 0002) ---
# Money is NUMERIC (Decimal), never float: a usage report must add up to the cent.
PRICE_TYPE = sa.Numeric(20, 8)
COST_TYPE = sa.Numeric(24, 12)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("name", sa.String(), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# The secret itself is never stored: only its SHA-256 and a visible prefix to find it by.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("tenant_id", sa.String(), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("prefix", sa.String(), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(), nullable=False),
    sa.Column("models", sa.JSON, nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Index("ix_api_keys_tenant_id", "tenant_id"),
)

quotas = sa.Table(
    "quotas",
    metadata,
    sa.Column("tenant_id", sa.String(), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("tokens_per_day", sa.BigInteger, nullable=True),
    sa.Column("requests_per_minute", sa.Integer, nullable=True),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("model", sa.String(), primary_key=True),
    sa.Column("input_per_1k", PRICE_TYPE, nullable=False),
    sa.Column("output_per_1k", PRICE_TYPE, nullable=False),
)

# One row per served request; trace_id is unique so settling twice cannot bill twice.
usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("trace_id", sa.String(), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(), nullable=False),
    sa.Column("key_prefix", sa.String(), nullable=False),
    sa.Column("model", sa.String(), nullable=False),
    sa.Column("adapter", sa.String(), nullable=True),
    sa.Column("endpoint", sa.String(), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cost", COST_TYPE, nullable=False),
    sa.Column("usage_source", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),  # YYYY-MM-DD, UTC
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_usage_tenant_id_day", "tenant_id", "day"),
)

traces = sa.Table(
    "traces",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("tenant_id", sa.String(), nullable=False),
    sa.Column("key_prefix", sa.String(), nullable=False),
    sa.Column("model", sa.String(), nullable=False),
    sa.Column("adapter", sa.String(), nullable=True),
    sa.Column("endpoint", sa.String(), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_traces_tenant_id_created_at", "tenant_id", "created_at"),
)

# --- The flywheel and governance: feedback, the audit chain, flywheel turns (migration 0003) ---

# One row per piece of feedback on a trace. (tenant_id, client_id) is unique, so a client that
# retries with the same id records its feedback once; rows without a client id never collide.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("trace_id", sa.String(), nullable=False),
    sa.Column("tenant_id", sa.String(), nullable=False),
    sa.Column("key_prefix", sa.String(), nullable=False),
    sa.Column("client_id", sa.String(), nullable=True),
    sa.Column("rating", sa.Integer, nullable=False),  # -1/+1 (down/up) or 1..5 (stars)
    sa.Column("scale", sa.String(), nullable=False),  # "thumbs" or "stars"
    sa.Column("corrected_answer", sa.Text, nullable=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "client_id"),
    sa.Index("ix_feedback_trace_id", "trace_id"),
    sa.Index("ix_feedback_tenant_id_created_at", "tenant_id", "created_at"),
)

# The append-only audit chain (see governance/audit.py). seq is the primary key, so two writers
# racing for the same place in the chain cannot both succeed: the loser retries on the new tip.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(), nullable=False),  # ISO 8601 UTC, exactly as hashed
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("target", sa.String(), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_action", "action"),
)

# A signed checkpoint pins the chain up to `seq`: later edits before it are caught even by
# someone who re-hashes the tail with a stolen key, as long as the checkpoint key differs.
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("at", sa.String(), nullable=False),
    sa.Column("signature", sa.String(), nullable=False),
)

# One row per flywheel turn: `state` holds each finished step's outputs, so a crashed turn
# resumes at the first step without them.
flywheel_turns = sa.Table(
    "flywheel_turns",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("name", sa.String(), nullable=False),  # the turn config's name
    sa.Column("number", sa.Integer, nullable=False),  # 1, 2, ... per name
    sa.Column("status", sa.String(), nullable=False),  # running|promoted|rejected|stopped|failed
    sa.Column("step", sa.String(), nullable=False),  # the step running or last finished
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("name", "number"),
)

# Output handed over without its AIGC labels (see store/deliveries.py), kept ≥ 180 days.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("tenant", sa.String(), nullable=False),  # tenant name; "" when none
    sa.Column("recipient", sa.String(), nullable=False),  # API key prefix, or who took the file
    sa.Column("channel", sa.String(), nullable=False),  # api | export | cli
    sa.Column("what", sa.String(), nullable=False),  # trace id, file path or dataset ref
    sa.Column("has_explicit", sa.Boolean(), nullable=False),  # visible label included
    sa.Column("has_implicit", sa.Boolean(), nullable=False),  # metadata label included
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Index("ix_deliveries_at", "at"),
    sa.Index("ix_deliveries_tenant_at", "tenant", "at"),
)
