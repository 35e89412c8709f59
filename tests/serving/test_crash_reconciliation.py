"""kill -9 the real server mid-load, then reconcile what clients received with the ledger.

200 concurrent requests (half streaming) from the official `openai` client against
`feilun serve` with a tiny model; the server is SIGKILLed part-way. Every response a client
received in full must have its usage row (with the same token counts), and every usage row
must have its trace — on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from feilun.app.workspace import init_workspace, opened
from feilun.serving.accounts import Accounts

FEILUN = str(Path(sys.executable).with_name("feilun"))
REQUESTS = 200
KILL_AFTER = 60


@dataclass
class Received:
    """What one client saw."""

    trace_id: str
    is_stream: bool
    completion_tokens: int
    prompt_tokens: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [FEILUN, "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not start")


def _one_request(client: openai.OpenAI, i: int) -> Received | None:
    messages = [{"role": "user", "content": f"Request {i}: tell me about the flywheel."}]
    is_stream = i % 2 == 1
    try:
        if not is_stream:
            raw = client.chat.completions.with_raw_response.create(
                model="tiny", messages=messages, max_tokens=8 + i % 9
            )
            response = raw.parse()
            assert response.usage is not None
            return Received(
                raw.headers["x-feilun-trace-id"],
                False,
                response.usage.completion_tokens,
                response.usage.prompt_tokens,
            )
        raw = client.chat.completions.with_raw_response.create(
            model="tiny",
            messages=messages,
            max_tokens=8 + i % 9,
            stream=True,
            stream_options={"include_usage": True},
        )
        trace_id = raw.headers["x-feilun-trace-id"]
        usage = None
        for chunk in raw.parse():
            usage = chunk.usage or usage
        assert usage is not None
        return Received(trace_id, True, usage.completion_tokens, usage.prompt_tokens)
    except (openai.APIConnectionError, openai.APITimeoutError, httpx.HTTPError):
        return None  # cut off by the kill: not a completed response


def _run_load_and_kill(env: dict[str, str], secret: str) -> list[Received]:
    port = _free_port()
    server = _start_server(env, port)
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0, timeout=60
    )
    done: list[Received] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        result = _one_request(client, i)
        if result is not None:
            with lock:
                done.append(result)
                if len(done) == KILL_AFTER:
                    os.kill(server.pid, signal.SIGKILL)

    with ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(work, range(REQUESTS)))
    server.wait(timeout=30)
    assert server.returncode == -signal.SIGKILL, "the server must have been killed mid-way"
    return done


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_loses_no_billed_response(
    backend: str, tmp_path: Path, tiny_model_dir: Path, request: pytest.FixtureRequest
) -> None:
    env = {"FEILUN_WORKSPACE": str(tmp_path / "ws")}
    if backend == "postgresql":
        env["FEILUN_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    workspace, _ = init_workspace(None, env)
    workspace.models.add("tiny", "safetensors", str(tiny_model_dir))
    accounts = Accounts(workspace.database)
    accounts.create_tenant("acme")
    secret, _ = accounts.create_key("acme")
    workspace.close()

    received = _run_load_and_kill(env, secret)
    assert KILL_AFTER <= len(received) < REQUESTS
    assert any(r.is_stream for r in received) and any(not r.is_stream for r in received)

    with opened(None, env) as ws, ws.database.engine.connect() as connection:
        usage = {
            row.trace_id: row
            for row in connection.execute(sa.text("SELECT * FROM usage")).mappings()
        }
        traces = set(connection.execute(sa.text("SELECT id FROM traces")).scalars())
    for r in received:
        row = usage.get(r.trace_id)
        assert row is not None, f"completed response {r.trace_id} is not billed"
        assert row["status"] == "ok"
        assert row["completion_tokens"] == r.completion_tokens
        assert row["prompt_tokens"] == r.prompt_tokens
    assert set(usage) == traces, "every usage row has its trace and every trace its usage"
