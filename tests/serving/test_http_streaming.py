"""Streams under stress: client disconnects, failures mid-stream, and a free event loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import openai
import pytest

from feilun.governance.moderation import Moderator, Policy
from feilun.serving.moderation import Moderation
from feilun.store.deliveries import Delivery

PROMPT = [{"role": "user", "content": "Tell me a long story."}]


def _auth(server: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.keys['alpha']}"}


def test_disconnect_bills_the_tokens_sent(server: Any) -> None:
    paced = server.gateway.open_model("tiny-paced")[1]
    closed_before = paced.closed
    body = {
        "model": "tiny-paced",
        "messages": PROMPT,
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", f"{server.url}/v1/chat/completions", json=body, headers=_auth(server)
        ) as response,
    ):
        assert response.status_code == 200
        trace_id = response.headers["x-feilun-trace-id"]
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"role"' not in line:
                seen += 1
                if seen == 2:
                    break
    # Leaving both blocks closed the connection mid-stream.
    outcome = server.ledger.outcome(trace_id)
    assert outcome.status == "disconnected"
    assert 2 <= outcome.completion_tokens < 400
    assert outcome.prompt_tokens > 0
    deadline = time.monotonic() + 5
    while paced.closed == closed_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert paced.closed == closed_before + 1  # the model's stream was closed, not left running
    # The model is free again (no lock left held by the abandoned stream).
    reply = server.client(timeout=10).chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=2, temperature=0
    )
    assert reply.choices


def test_failure_mid_stream_sends_an_error_event_and_settles(server: Any) -> None:
    stream = server.client().chat.completions.with_raw_response.create(
        model="tiny-faulty", messages=PROMPT, max_tokens=50, temperature=0, stream=True
    )
    trace_id = stream.headers["x-feilun-trace-id"]
    received = []
    with pytest.raises(openai.APIError, match="upstream went away"):
        for chunk in stream.parse():
            received.append(chunk)
    outcome = server.ledger.outcome(trace_id)
    assert outcome.status == "error"
    assert 1 <= outcome.completion_tokens <= 3
    assert server.ledger.reserved.get(trace_id) is None  # the reservation was released


def test_health_answers_while_a_long_stream_runs(server: Any) -> None:
    started, done = threading.Event(), threading.Event()

    def long_stream() -> None:
        stream = server.client(timeout=60).chat.completions.create(
            model="tiny-paced", messages=PROMPT, max_tokens=120, temperature=0, stream=True
        )
        for _ in stream:
            started.set()
        done.set()

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert started.wait(10)
    latencies = []
    with httpx.Client() as client:
        in_flight = client.get(f"{server.url}/metrics").text
        while not done.is_set():
            begin = time.perf_counter()
            assert client.get(f"{server.url}/health").status_code == 200
            latencies.append(time.perf_counter() - begin)
            time.sleep(0.02)
    worker.join(60)
    assert len(latencies) >= 5, "the stream ended too early to test anything"
    assert max(latencies) < 0.2
    assert "feilun_streams_in_flight 1.0" in in_flight


def test_a_stream_cut_by_its_client_is_still_a_recorded_unlabelled_delivery(server: Any) -> None:
    deliveries: list[Delivery] = []
    waived = Policy.model_validate({"labels": {"api": True, "implicit": False}})
    server.gateway.moderation = Moderation(
        Moderator(), lambda tenant: waived, b"k" * 32, on_delivery=deliveries.append
    )
    body = {"model": "tiny-paced", "messages": PROMPT, "max_tokens": 400, "stream": True}
    try:
        with (
            httpx.Client(timeout=10) as client,
            client.stream(
                "POST", f"{server.url}/v1/chat/completions", json=body, headers=_auth(server)
            ) as response,
        ):
            trace_id = response.headers["x-feilun-trace-id"]
            for line in response.iter_lines():
                if '"content":"' in line and '"role"' not in line:
                    break  # one piece of model text received, then the client goes away
        assert server.ledger.outcome(trace_id).status == "disconnected"
    finally:
        server.gateway.moderation = None
    [delivery] = deliveries  # recorded before the bill was settled
    assert (delivery.what, delivery.channel, delivery.has_implicit) == (trace_id, "api", False)
