"""Prometheus metrics of one app: requests by route and status, latency, tokens, open streams.

Each app owns its `CollectorRegistry`, so several apps (tests, workers) never share counters.
Routes are labelled by their template (`/v1/chat/completions`), never by the raw path.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The gateway's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "feilun_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "feilun_http_request_duration_seconds",
            "Time from request to the last byte of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "feilun_prompt_tokens",
            "Prompt tokens read, by model.",
            ["model"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "feilun_completion_tokens",
            "Completion tokens sent, by model.",
            ["model"],
            registry=self.registry,
        )
        self.streams_in_flight = Gauge(
            "feilun_streams_in_flight",
            "Streamed responses being sent now.",
            registry=self.registry,
        )

    def count_tokens(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Add one request's tokens to the per-model counters."""
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.completion_tokens.labels(model).inc(completion_tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and times it to the end of its body."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and record its route template and status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
