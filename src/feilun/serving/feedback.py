"""Feedback on served answers: `POST /v1/feedback`, and the feedback table's writes and reads.

A key rates only its own tenant's traces: another tenant's trace is 404 exactly like a missing
one, so a key learns nothing about other tenants. A retry with the same `client_id` returns the
first row (200) and never writes a second; `(tenant_id, client_id)` is unique in the table, so
two racing retries cannot both insert.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any

import pydantic
import sqlalchemy as sa
from fastapi import APIRouter, Header, Request, Response

from feilun.core.errors import BackendUnavailable, ConfigError
from feilun.core.records import new_id, utc_now
from feilun.serving.gateway import Gateway
from feilun.serving.reads import get_trace
from feilun.store.database import Database
from feilun.store.schema import feedback, tenants, traces

THUMBS = {"up": 1, "down": -1}
MAX_STARS = 5
RATING_HELP = "'up', 'down', or a number of stars from 1 to 5"
OPERATOR = "operator"  # the key prefix recorded for feedback added from the command line
MAX_LIST = 1000


def parse_rating(value: Any) -> tuple[int, str]:
    """`(rating, scale)` of a rating as sent: up/down → thumbs ±1, 1-5 → stars."""
    if isinstance(value, str) and value.strip().lower() in THUMBS:
        return THUMBS[value.strip().lower()], "thumbs"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_STARS:
        return value, "stars"
    raise ConfigError(f"rating {value!r} is not allowed", f"send {RATING_HELP}")


def rating_label(rating: int, scale: str) -> str:
    """How people read a stored rating: `up`, `down`, `4★`."""
    if scale == "thumbs":
        return "up" if rating > 0 else "down"
    return f"{rating}★"


class FeedbackIn(pydantic.BaseModel):
    """One rating (and optional correction) of a served answer."""

    model_config = pydantic.ConfigDict(extra="forbid")
    trace_id: str = pydantic.Field(
        min_length=1, max_length=128, description="The answer's `x-feilun-trace-id` header."
    )
    rating: int | str = pydantic.Field(description=f"The rating: {RATING_HELP}.")
    corrected_answer: str | None = pydantic.Field(
        None, max_length=100_000, description="What the answer should have been."
    )
    tags: list[Annotated[str, pydantic.Field(min_length=1, max_length=64)]] = pydantic.Field(
        default_factory=list, max_length=32, description="Free labels, e.g. ['wrong_number']."
    )
    comment: str | None = pydantic.Field(None, max_length=10_000, description="Free text.")
    client_id: str | None = pydantic.Field(
        None,
        min_length=1,
        max_length=128,
        description="Idempotency key: a retry with the same id returns the first row.",
    )

    @pydantic.field_validator("rating", mode="before")
    @classmethod
    def _check_rating(cls, value: Any) -> Any:
        try:
            parse_rating(value)
        except ConfigError as e:
            raise ValueError(f"rating must be {RATING_HELP}; got {value!r}") from e
        return value


@dataclass(frozen=True)
class FeedbackRow:
    """One stored piece of feedback."""

    id: str
    trace_id: str
    tenant_id: str
    key_prefix: str
    client_id: str | None
    rating: int
    scale: str
    corrected_answer: str | None
    tags: list[str]
    comment: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields, with the rating as people read it and the time as ISO 8601."""
        return {
            "object": "feedback",
            **asdict(self),
            "label": rating_label(self.rating, self.scale),
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class FeedbackStats:
    """How much feedback there is, and of what kind."""

    total: int = 0
    with_correction: int = 0
    by_rating: Counter[str] = field(default_factory=Counter)
    by_tenant: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    by_day: Counter[str] = field(default_factory=Counter)

    @property
    def correction_share(self) -> float:
        """Share of the feedback that carries a corrected answer (0 when there is none)."""
        return self.with_correction / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain values, each breakdown sorted by key."""
        return {
            "total": self.total,
            "with_correction": self.with_correction,
            "correction_share": round(self.correction_share, 4),
            **{
                name: dict(sorted(getattr(self, name).items()))
                for name in ("by_rating", "by_tenant", "by_model", "by_day")
            },
        }


class FeedbackStore:
    """Feedback rows in the metadata database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    def record(
        self, entry: FeedbackIn, tenant_id: str | None, key_prefix: str
    ) -> tuple[FeedbackRow, bool]:
        """Store feedback on a trace of `tenant_id` (None: any tenant's, as the operator).

        Returns the row and whether it is new; an earlier row with the same client id is
        returned as it is. NotFound when the trace does not exist or is another tenant's.
        """
        trace = get_trace(self._db, entry.trace_id, tenant_id)
        if entry.client_id is not None:
            existing = self._by_client_id(trace.tenant_id, entry.client_id)
            if existing is not None:
                return _same_trace(existing, entry), False
        rating, scale = parse_rating(entry.rating)
        row = FeedbackRow(
            id=new_id("fbk"),
            trace_id=trace.id,
            tenant_id=trace.tenant_id,
            key_prefix=key_prefix,
            client_id=entry.client_id,
            rating=rating,
            scale=scale,
            corrected_answer=(entry.corrected_answer or "").strip() or None,
            tags=list(dict.fromkeys(entry.tags)),
            comment=entry.comment,
            created_at=self._clock(),
        )
        try:
            with self._db.begin() as connection:
                connection.execute(sa.insert(feedback).values(**asdict(row)))
        except sa.exc.IntegrityError:
            # A retry with the same client id raced this one and won: its row stands.
            existing = self._by_client_id(trace.tenant_id, entry.client_id or "")
            if entry.client_id is None or existing is None:
                raise
            return _same_trace(existing, entry), False
        return row, True

    def find(
        self, tenant_id: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[FeedbackRow]:
        """The newest feedback first, of one tenant or (None) of all."""
        if not 1 <= limit <= MAX_LIST:
            raise ConfigError(f"limit={limit} is out of range", f"use 1 to {MAX_LIST}")
        query = _filtered(sa.select(feedback), tenant_id, since)
        query = query.order_by(feedback.c.created_at.desc(), feedback.c.id.desc()).limit(limit)
        with self._db.session(is_read_only=True) as session:
            return [_row_of(row) for row in session.execute(query)]

    def stats(self, tenant_id: str | None = None, since: datetime | None = None) -> FeedbackStats:
        """Counts by rating, tenant, model and UTC day, and how many carry a correction."""
        query = _filtered(
            sa.select(
                feedback.c.rating,
                feedback.c.scale,
                feedback.c.corrected_answer,
                feedback.c.created_at,
                sa.func.coalesce(tenants.c.name, feedback.c.tenant_id).label("tenant"),
                sa.func.coalesce(traces.c.model, "?").label("model"),
            )
            .select_from(feedback)
            .outerjoin(tenants, tenants.c.id == feedback.c.tenant_id)
            .outerjoin(traces, traces.c.id == feedback.c.trace_id),
            tenant_id,
            since,
        )
        stats = FeedbackStats()
        with self._db.session(is_read_only=True) as session:
            for row in session.execute(query):
                stats.total += 1
                stats.with_correction += bool(row.corrected_answer)
                stats.by_rating[rating_label(row.rating, row.scale)] += 1
                stats.by_tenant[row.tenant] += 1
                stats.by_model[row.model] += 1
                stats.by_day[row.created_at.date().isoformat()] += 1
        return stats

    def _by_client_id(self, tenant_id: str, client_id: str) -> FeedbackRow | None:
        query = sa.select(feedback).where(
            feedback.c.tenant_id == tenant_id, feedback.c.client_id == client_id
        )
        with self._db.session(is_read_only=True) as session:
            row = session.execute(query).first()
        return None if row is None else _row_of(row)


def _same_trace(existing: FeedbackRow, entry: FeedbackIn) -> FeedbackRow:
    """The earlier row of a client id, unless the client reused the id for another trace."""
    if existing.trace_id != entry.trace_id:
        raise ConfigError(
            f"client_id {existing.client_id!r} was already used for feedback {existing.id} on "
            f"trace {existing.trace_id}",
            "send a new client_id for each piece of feedback",
        )
    return existing


def _filtered(
    query: sa.Select[Any], tenant_id: str | None, since: datetime | None
) -> sa.Select[Any]:
    if tenant_id is not None:
        query = query.where(feedback.c.tenant_id == tenant_id)
    if since is not None:
        query = query.where(feedback.c.created_at >= since)
    return query


def _row_of(row: Any) -> FeedbackRow:
    values = {column.name: getattr(row, column.name) for column in feedback.columns}
    return FeedbackRow(**{**values, "tags": list(values["tags"] or [])})


# --- HTTP -----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1", tags=["feedback"])


def _store(request: Request) -> FeedbackStore:
    store = getattr(request.app.state, "feedback", None)
    if not isinstance(store, FeedbackStore):
        raise BackendUnavailable(
            "this server keeps no feedback (it was built without a feedback store)",
            "serve a workspace with `feilun serve`, which records feedback",
        )
    return store


@router.post(
    "/feedback",
    status_code=201,
    responses={200: {"description": "The feedback sent earlier with the same client_id."}},
)
def post_feedback(
    body: FeedbackIn,
    request: Request,
    response: Response,
    authorization: Annotated[str | None, Header(alias="Authorization")] = None,
) -> dict[str, Any]:
    """Rate one of the caller's tenant's answers, optionally with the corrected answer."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.ledger.authenticate(authorization)
    row, is_new = _store(request).record(body, principal.tenant_id, principal.key_prefix)
    if not is_new:
        response.status_code = 200
    return row.to_json()
