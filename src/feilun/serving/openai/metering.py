"""What every OpenAI endpoint does around the model: authenticate, admit, and settle the bill.

Ledger calls may touch a database: admission runs on the event loop when it only reads
caches, and settling on it when the write lock is free (SQLite); else they run in a worker
thread (`core.blocking`). `Meter.settle` is shielded from cancellation and idempotent: a stream
cut short by its client is still billed exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request

from feilun.core.blocking import run_nonblocking
from feilun.serving.gateway import Admission, Gateway, Ledger, Outcome, Principal
from feilun.serving.metrics import Metrics

logger = logging.getLogger(__name__)


def gateway_of(request: Request) -> Gateway:
    """The Gateway the app was built with."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def metrics_of(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


async def authenticate(request: Request) -> Principal:
    """The caller of this request (401 errors from the ledger otherwise)."""
    ledger = gateway_of(request).ledger
    return await run_nonblocking(ledger.authenticate, request.headers.get("authorization"))


def usage_source_of(model: object) -> str:
    """Where token counts come from: `upstream` (reported) or `tokenizer` (counted here)."""
    return str(getattr(model, "usage_source", "tokenizer"))


def adapter_of(ref: str) -> str | None:
    """The adapter part of a pinned reference `base@1:adapter@2[+kb:handbook@3]`, if any."""
    _, sep, adapter = ref.partition("+kb:")[0].partition(":")
    return adapter if sep else None


async def admit(
    request: Request, principal: Principal, model: str, reserve_tokens: int
) -> Admission:
    """Admit the request under the key's allow-list, quota and rate; tags it with its trace id."""
    ledger = gateway_of(request).ledger
    admission = await run_nonblocking(ledger.admit, principal, model, reserve_tokens)
    request.state.trace_id = admission.trace_id
    return admission


@dataclass
class Meter:
    """The open bill of one admitted request."""

    ledger: Ledger
    metrics: Metrics
    admission: Admission
    ref: str
    endpoint: str
    request_body: dict[str, Any]
    usage_source: str
    is_settled: bool = False
    # What the trace stores of a response (moderation added, PII masked); None: as it is.
    to_trace: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    async def settle(
        self, response: dict[str, Any], prompt_tokens: int, completion_tokens: int, status: str
    ) -> None:
        """Write usage and trace (once); runs to the end even if the request is cancelled."""
        if self.is_settled:
            return
        self.is_settled = True
        outcome = Outcome(
            model=self.ref,
            adapter=adapter_of(self.ref),
            request=self.request_body,
            response=self.to_trace(response) if self.to_trace else response,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_source=self.usage_source,
            status=status,
            endpoint=self.endpoint,
        )
        with anyio.CancelScope(shield=True):
            await run_nonblocking(self.ledger.settle, self.admission, outcome)
        self.metrics.count_tokens(self.ref, prompt_tokens, completion_tokens)


def new_meter(
    request: Request,
    admission: Admission,
    ref: str,
    endpoint: str,
    body: dict[str, Any],
    usage_source: str,
) -> Meter:
    """A Meter for an admitted request."""
    return Meter(
        ledger=gateway_of(request).ledger,
        metrics=metrics_of(request),
        admission=admission,
        ref=ref,
        endpoint=endpoint,
        request_body=body,
        usage_source=usage_source,
    )
