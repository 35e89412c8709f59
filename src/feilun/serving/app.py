"""The FastAPI app of the gateway: OpenAI routes, health, metrics, limits and error shape.

Every response under /v1 carries `x-feilun-trace-id` (the admission's trace id once admitted).
Bodies over `ServerLimits.max_body_bytes` are refused with 413 from Content-Length, or while
a chunked body is read, before any route code runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feilun.core.records import new_id
from feilun.serving.errors import (
    TRACE_HEADER,
    PayloadTooLarge,
    error_payload,
    install_error_handlers,
)
from feilun.serving.fast_lane import Endpoint, FastLane
from feilun.serving.feedback import router as feedback_router
from feilun.serving.gateway import Gateway
from feilun.serving.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from feilun.serving.openai.chat_completions.router import chat_completions
from feilun.serving.openai.chat_completions.router import router as chat_router
from feilun.serving.openai.completions.router import completions
from feilun.serving.openai.completions.router import router as completions_router
from feilun.serving.openai.embeddings.router import embeddings
from feilun.serving.openai.embeddings.router import router as embeddings_router
from feilun.serving.openai.models.router import router as models_router

# Served past FastAPI's routing (see `feilun.serving.fast_lane`).
FAST_LANE: dict[str, Endpoint] = {
    "/v1/chat/completions": chat_completions,
    "/v1/completions": completions,
    "/v1/embeddings": embeddings,
}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body is over the limit of {limit} bytes",
        fix="send a smaller request (fewer or shorter messages or inputs)",
    )


class BodyLimitMiddleware:
    """Refuse request bodies over `max_body_bytes` (413), declared or streamed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check Content-Length up front; read a chunked body counting its bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse(error_payload(_too_large(limit)), 413)
            await response(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)  # the server holds the body to its length
            return
        # No Content-Length (chunked): read the body up to the limit before any route runs.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                response = JSONResponse(error_payload(_too_large(limit)), 413)
                await response(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


class TraceHeaderMiddleware:
    """Put `x-feilun-trace-id` on every /v1 response: the admission's id, else a fresh one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the header when the response starts, unless a route already set it."""
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == TRACE_HEADER.encode() for name, _ in headers):
                    trace_id = scope.get("state", {}).get("trace_id") or new_id("trc")
                    headers.append((TRACE_HEADER.encode(), trace_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_trace)


def build_app(gateway: Gateway) -> FastAPI:
    """The gateway's HTTP app; the composition root adds admin routes to it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if gateway.shutdown is not None:
            await gateway.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="Feilun gateway",
        summary="OpenAI-compatible API with tenants, keys, quotas, metering and traces.",
        version="1",
    )
    metrics = Metrics()
    app.state.gateway = gateway
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in (models_router, chat_router, completions_router, embeddings_router):
        app.include_router(router)
    app.include_router(feedback_router)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the server answers (no auth)."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition (no auth)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # The last added is the outermost: metrics see every status, 413s get a trace header too.
    app.add_middleware(FastLane, fastapi_app=app, endpoints=FAST_LANE)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=gateway.limits.max_body_bytes)
    app.add_middleware(TraceHeaderMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
