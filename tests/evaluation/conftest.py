"""A workspace with the tiny model registered as `tiny`; paths of the shared evaluation data."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from feilun.app.workspace import opened
from feilun.evaluation.suites import EvalContext

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A file of the shared evaluation data; the test is skipped when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared evaluation data {path} is not available")
    return path


@pytest.fixture
def workspace(tiny_workspace: Path) -> Path:
    """A fresh workspace with the tiny random Llama registered as `tiny`."""
    return tiny_workspace


@pytest.fixture
def env(workspace: Path) -> dict[str, str]:
    """Environment pointing the CLI at the test's workspace."""
    return {"FEILUN_WORKSPACE": str(workspace)}


@pytest.fixture
def ctx(workspace: Path):
    """The catalog, artifact store and model registry of the test's workspace."""
    with opened(workspace, env={}) as ws:
        yield EvalContext(ws.catalog, ws.artifacts, ws.models)


class ChatEndpoint:
    """A local OpenAI-compatible /chat/completions server answering with `reply(body)`.

    `failures` makes that many next requests fail with 503 (an overloaded upstream).
    """

    def __init__(self, reply: Callable[[dict[str, Any]], str]) -> None:
        self.reply, self.failures, self.calls = reply, 0, 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                endpoint.calls += 1
                if endpoint.failures:
                    endpoint.failures -= 1
                    status, payload = 503, {"error": {"message": "overloaded", "type": "server"}}
                else:
                    message = {"role": "assistant", "content": endpoint.reply(body)}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    usage = {"prompt_tokens": 5, "completion_tokens": 5}
                    status, payload = 200, {"choices": [choice], "usage": usage}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self) -> ChatEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
