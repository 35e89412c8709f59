"""The gateway in front of an upstream OpenAI-compatible server (here: a second Feilun app).

The gateway adds its own keys and metering; the upstream's reported usage is what gets billed,
and a client leaving mid-stream closes the upstream's stream too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from feilun.models.runtimes.openai_upstream import UpstreamChatModel
from feilun.serving.app import build_app

from .conftest import KEY, Server, make_gateway, make_ledger

PROMPT = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture(scope="module")
def front(
    server: Server, serve_app: Callable[[Any], AbstractContextManager[str]]
) -> Iterator[Server]:
    """A gateway whose models are the `server` gateway's, reached over HTTP."""
    upstream = {
        name: UpstreamChatModel(f"{server.url}/v1", name, api_key=KEY, name=name)
        for name in ("tiny", "tiny-paced")
    }
    ledger = make_ledger()
    gateway = make_gateway(upstream, ledger, None)  # type: ignore[arg-type]

    async def shutdown() -> None:
        for model in upstream.values():
            await model.aclose()

    gateway.shutdown = shutdown
    with serve_app(build_app(gateway)) as url:
        yield Server(url, ledger, gateway, None)


def test_answers_match_the_upstream_and_bill_its_usage(server: Server, front: Server) -> None:
    ask: dict[str, Any] = {"model": "tiny", "messages": PROMPT, "max_tokens": 12, "seed": 3}
    direct = server.client().chat.completions.create(**ask)
    via = front.client().with_raw_response.chat.completions.create(**ask)
    reply = via.parse()
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.usage == direct.usage
    outcome = front.ledger.outcome(via.headers["x-feilun-trace-id"])
    assert outcome.usage_source == "upstream"
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (
        direct.usage.prompt_tokens,
        direct.usage.completion_tokens,
    )


def test_streams_match_the_upstream(server: Server, front: Server) -> None:
    ask: dict[str, Any] = {"model": "tiny", "messages": PROMPT, "max_tokens": 12, "seed": 3}
    options = {"stream": True, "stream_options": {"include_usage": True}}
    chunks = {
        name: list(target.client().chat.completions.create(**ask, **options))
        for name, target in (("direct", server), ("via", front))
    }
    texts = {
        name: "".join(c.choices[0].delta.content or "" for c in found if c.choices)
        for name, found in chunks.items()
    }
    assert texts["via"] == texts["direct"] != ""
    assert chunks["via"][-1].usage == chunks["direct"][-1].usage


def test_leaving_mid_stream_closes_the_upstream_stream(server: Server, front: Server) -> None:
    paced = server.gateway.open_model("tiny-paced")[1]
    closed_before = paced.closed  # type: ignore[attr-defined]
    body = {"model": "tiny-paced", "messages": PROMPT, "max_tokens": 400, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", f"{front.url}/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        trace_id = response.headers["x-feilun-trace-id"]
        pieces = 0
        for line in response.iter_lines():
            pieces += '"content":"' in line and '"role"' not in line
            if pieces == 2:
                break
    outcome = front.ledger.outcome(trace_id)
    assert outcome.status == "disconnected"
    assert 2 <= outcome.completion_tokens < 400
    deadline = time.monotonic() + 5
    while paced.closed == closed_before and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    assert paced.closed == closed_before + 1  # type: ignore[attr-defined]
