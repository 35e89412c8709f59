"""What the HTTP routes work with: the caller (Principal), its Admission, the Outcome to bill.

The routes never touch the database themselves: they ask the `Ledger` to authenticate and
admit a request, run the model, then `settle` the Outcome — usage row and trace in one
transaction — before the response (or the stream's last event) leaves the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from feilun.core.protocols import ChatModel, Embedder

if TYPE_CHECKING:
    from feilun.serving.moderation import Moderation

DEFAULT_MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's API key and what it may use."""

    tenant_id: str
    tenant_name: str
    key_prefix: str
    models: tuple[str, ...] | None  # None: every model
    is_admin: bool = False


@dataclass
class Admission:
    """A request let in, holding a token reservation until it is settled."""

    principal: Principal
    model: str
    reserved_tokens: int
    trace_id: str
    started_at: float


@dataclass
class Outcome:
    """What one request did, as written to the usage ledger and the trace."""

    model: str
    adapter: str | None
    request: dict[str, Any]
    response: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    usage_source: str  # "tokenizer" or "upstream"
    status: str  # "ok" | "disconnected" | "error"
    endpoint: str  # "chat.completions" | "completions" | "embeddings"


class Ledger(Protocol):
    """Authentication, admission and exact metering."""

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization: Bearer …` header; 401 errors otherwise."""
        ...

    def admit(self, principal: Principal, model: str, reserve_tokens: int) -> Admission:
        """Check the model is allowed and reserve tokens under the quota and rate limit."""
        ...

    def settle(self, admission: Admission, outcome: Outcome) -> None:
        """Write usage and trace in one transaction, then release the reservation."""
        ...


@dataclass(frozen=True)
class ServerLimits:
    """Limits the HTTP layer enforces before any work is done."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass
class Gateway:
    """Everything the routes need, built by the composition root."""

    open_model: Callable[[str], tuple[str, ChatModel]]  # name/alias → (pinned ref, model)
    model_names: Callable[[], list[str]]  # names and aliases clients may ask for
    ledger: Ledger
    embedder: Callable[[], Embedder] | None = None
    embedder_name: str | None = None  # listed by /v1/models without loading the embedder
    shutdown: Callable[[], Awaitable[None]] | None = None  # release pools when the server stops
    limits: ServerLimits = field(default_factory=ServerLimits)
    moderation: Moderation | None = None  # per-tenant content policies; None: no moderation
