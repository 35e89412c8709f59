"""The `openai_upstream` runtime against a real HTTP server speaking the OpenAI protocol.

The server here is a minimal OpenAI-compatible endpoint in front of a tiny transformers
model (the serving stage will replace it with Feilun's own gateway).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from feilun.core.errors import BackendUnavailable, NotFound
from feilun.core.protocols import GenerationParams
from feilun.core.records import BaseModel, Message
from feilun.models.runtimes.openai_upstream import UpstreamChatModel, load_runtime
from feilun.models.runtimes.transformers import TransformersChatModel
from feilun.models.tiny import build_tiny_model

MODEL_ID = "tiny-upstream"


def _params(body: dict[str, Any]) -> GenerationParams:
    return GenerationParams(
        max_tokens=body.get("max_tokens", 16),
        temperature=body.get("temperature", 0.0),
        top_p=body.get("top_p", 1.0),
        stop=body.get("stop") or [],
        seed=body.get("seed"),
    )


def make_handler(model: TransformersChatModel, seen: list[dict[str, Any]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append({"auth": self.headers.get("authorization"), **body})
            if body["model"] != MODEL_ID:
                self._send(404, {"error": {"message": "no such model", "type": "not_found"}})
                return
            messages = [Message(**m) for m in body["messages"]]
            if not body.get("stream"):
                done = model.chat(messages, _params(body))
                self._send(
                    200,
                    {
                        "id": "c1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": MODEL_ID,
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": done.finish_reason,
                                "message": {"role": "assistant", "content": done.text},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": done.usage.prompt_tokens,
                            "completion_tokens": done.usage.completion_tokens,
                            "total_tokens": done.usage.total_tokens,
                        },
                    },
                )
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for delta in model.stream(messages, _params(body)):
                chunk: dict[str, Any] = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": MODEL_ID,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": delta.text},
                            "finish_reason": delta.finish_reason,
                        }
                    ],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                if delta.usage is not None:
                    usage = {
                        "prompt_tokens": delta.usage.prompt_tokens,
                        "completion_tokens": delta.usage.completion_tokens,
                        "total_tokens": delta.usage.total_tokens,
                    }
                    tail = {**chunk, "choices": [], "usage": usage}
                    self.wfile.write(f"data: {json.dumps(tail)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


@pytest.fixture(scope="module")
def local_model() -> TransformersChatModel:
    model, tokenizer = build_tiny_model(seed=3)
    return TransformersChatModel(model, tokenizer, name="tiny", quantize="none")


@pytest.fixture(scope="module")
def server(local_model: TransformersChatModel) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(local_model, seen))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    httpd.shutdown()


def _record(base_url: str, model: str = MODEL_ID) -> BaseModel:
    return BaseModel(
        name="remote",
        source="upstream",
        location=base_url,
        runtime="openai_upstream",
        meta={"upstream_model": model, "api_key_env": "FEILUN_TEST_UPSTREAM_KEY"},
    )


def test_chat_and_stream_match_the_local_model(
    server: tuple[str, list[dict[str, Any]]],
    local_model: TransformersChatModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    base_url, seen = server
    monkeypatch.setenv("FEILUN_TEST_UPSTREAM_KEY", "sk-test-123")
    remote = load_runtime(_record(base_url), tmp_path)
    messages = [Message(role="user", content="What is the capital of France?")]
    params = GenerationParams(max_tokens=12, seed=5, temperature=0.9)
    local = local_model.chat(messages, params)
    answer = remote.chat(messages, params)
    assert answer.text == local.text
    assert answer.usage == local.usage
    assert seen[-1]["auth"] == "Bearer sk-test-123"
    assert seen[-1]["seed"] == 5 and seen[-1]["max_tokens"] == 12
    deltas = list(remote.stream(messages, params))
    assert "".join(d.text for d in deltas) == local.text
    assert deltas[-1].usage == local.usage
    assert deltas[-1].finish_reason == local.finish_reason


def test_unknown_upstream_model_and_dead_server(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base_url, _ = server
    messages = [Message(role="user", content="hi")]
    with pytest.raises(NotFound, match="does not serve"):
        load_runtime(_record(base_url, "other"), tmp_path).chat(messages, GenerationParams())
    dead = UpstreamChatModel("http://127.0.0.1:9/v1", MODEL_ID, api_key="x", name="dead")
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        dead.chat(messages, GenerationParams())


def test_token_estimate_counts_chinese_characters() -> None:
    model = UpstreamChatModel("http://127.0.0.1:9/v1", MODEL_ID, api_key="x", name="dead")
    assert model.count_tokens([Message(role="user", content="飞轮飞轮")]) == 4 + 4
    assert model.count_tokens([Message(role="user", content="abcdefgh")]) == 2 + 4


def test_async_chat_and_stream_match_the_sync_ones(
    server: tuple[str, list[dict[str, Any]]],
    local_model: TransformersChatModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    base_url, _ = server
    remote = load_runtime(_record(base_url), tmp_path)
    messages = [Message(role="user", content="What is the capital of France?")]
    params = GenerationParams(max_tokens=12, seed=5, temperature=0.9)
    local = local_model.chat(messages, params)

    async def run() -> tuple[Any, list[Any]]:
        answer = await remote.achat(messages, params)
        deltas = [d async for d in await remote.astream(messages, params)]
        await remote.aclose()
        return answer, deltas

    answer, deltas = asyncio.run(run())
    assert answer.text == local.text and answer.usage == local.usage
    assert "".join(d.text for d in deltas) == local.text
    assert deltas[-1].usage == local.usage and deltas[-1].finish_reason == local.finish_reason


def test_async_stream_fails_before_returning_and_closes_unstarted(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base_url, _ = server
    messages = [Message(role="user", content="hi")]

    async def run() -> None:
        other = load_runtime(_record(base_url, "other"), tmp_path)
        with pytest.raises(NotFound, match="does not serve"):
            await other.astream(messages, GenerationParams())
        remote = load_runtime(_record(base_url), tmp_path)
        stream = await remote.astream(messages, GenerationParams(max_tokens=4))
        await stream.aclose()  # never iterated: the connection is released all the same
        assert stream._response.closed  # type: ignore[attr-defined]
        dead = UpstreamChatModel("http://127.0.0.1:9/v1", MODEL_ID, api_key="x", name="dead")
        with pytest.raises(BackendUnavailable, match="cannot reach"):
            await dead.astream(messages, GenerationParams())
        for model in (other, remote, dead):
            await model.aclose()

    asyncio.run(run())


def test_sse_bytes_split_anywhere_give_the_same_deltas() -> None:
    from feilun.models.runtimes.openai_upstream import _SseReader

    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "飞轮"}}]},
        {"choices": [{"index": 0, "delta": {"content": " turns"}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    ]
    wire = (
        b": comment\r\n\r\n"
        + b"".join(
            b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n" for e in events
        )
        + b"data: [DONE]\n\n"
        + b"data: {not json after the end}\n\n"
    )
    for size in (1, 2, 5, 64, len(wire)):  # 1 and 2 split the multi-byte characters too
        reader = _SseReader()
        texts = [
            d.text
            for start in range(0, len(wire), size)
            for d in reader.feed(wire[start : start + size])
        ]
        assert texts == ["飞轮", " turns"], size
        assert reader.is_done
        last = reader.last()
        assert last.finish_reason == "length"
        assert last.usage is not None and last.usage.completion_tokens == 3
