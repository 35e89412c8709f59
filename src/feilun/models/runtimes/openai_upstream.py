"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, a cloud API) as a ChatModel.

Requests go out as plain JSON over pooled keep-alive connections: the gateway adds keys,
metering and traces in front of the upstream and must add as little latency as it can, so it
awaits `achat`/`astream` (aiohttp, whose C parser relays a stream at a fraction of the CPU
cost) on its event loop instead of holding a thread per request; `chat`/`stream` use `httpx`.
Usage figures are the upstream's own report, which serving records as such.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import unicodedata
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from feilun.core.errors import BackendUnavailable, ConfigError, NotFound, QuotaExceeded
from feilun.core.protocols import Completion, Delta, GenerationParams, Usage
from feilun.core.records import BaseModel, Message

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MAX_CONNECTIONS = 64
CONNECT_TIMEOUT_S = 10.0
_JSON_BODY = {"content-type": "application/json"}  # bodies are sent as orjson bytes


class UpstreamChatModel:
    """A ChatModel that forwards to an OpenAI-compatible endpoint's /chat/completions."""

    usage_source = "upstream"  # token counts are the upstream's report

    def __init__(
        self, base_url: str, model: str, *, api_key: str, name: str, timeout_s: float = 120.0
    ) -> None:
        self.name = name
        self.model = model
        self.base_url = base_url
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"authorization": f"Bearer {api_key}", "accept-encoding": "identity"}
        self._timeout_s = timeout_s
        # Connecting is safe to retry: nothing reached the upstream yet.
        self._client = httpx.Client(
            headers=self._headers,
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            ),
            transport=httpx.HTTPTransport(retries=1),
        )
        # An async session's pool belongs to one event loop: one session per loop.
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s, connect=CONNECT_TIMEOUT_S),
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            )
            self._sessions[loop] = session
        return session

    async def aclose(self) -> None:
        """Close this event loop's connection pool (the server calls it at shutdown)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    def _request(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """Forward one non-streamed chat completion."""
        with _upstream_errors(self):
            response = self._client.post(self._url, json=self._request(messages, params))
            _raise_for_status(self, response.status_code, response.text, response.headers)
            return _completion(response.json())

    async def achat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """`chat` on the running event loop."""
        with _upstream_errors(self):
            session = self._session()
            body = orjson.dumps(self._request(messages, params))
            async with session.post(self._url, data=body, headers=_JSON_BODY) as response:
                raw = await response.read()
                if response.status >= 400:
                    text = raw.decode(errors="replace")
                    _raise_for_status(self, response.status, text, response.headers)
            return _completion(orjson.loads(raw))

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Forward a streamed chat completion, asking the upstream to report usage."""
        body = self._stream_request(messages, params)
        reader = _SseReader()
        with _upstream_errors(self), self._client.stream("POST", self._url, json=body) as response:
            if response.is_error:
                response.read()
                _raise_for_status(self, response.status_code, response.text, response.headers)
            for data in response.iter_raw():
                yield from reader.feed(data)
                if reader.is_done:
                    break
        yield reader.last()

    async def astream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncDeltas:
        """`stream` on the running event loop; the upstream's status is checked before return."""
        with _upstream_errors(self):
            body = orjson.dumps(self._stream_request(messages, params))
            response = await self._session().post(self._url, data=body, headers=_JSON_BODY)
            if response.status >= 400:
                text = await response.text()
                response.release()
                _raise_for_status(self, response.status, text, response.headers)
        return AsyncDeltas(self, response)

    def _stream_request(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> dict[str, Any]:
        return self._request(messages, params) | {
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """An estimate: upstream servers do not expose their tokenizer.

        One token per CJK character and per four other characters, plus four per message.
        """
        total = 0
        for message in messages:
            wide = sum(1 for ch in message.content if unicodedata.east_asian_width(ch) == "W")
            total += wide + (len(message.content) - wide + 3) // 4 + 4
        return total


class _SseReader:
    """Turns the upstream's SSE bytes into Deltas; `last()` carries finish_reason and usage.

    Bytes are fed as they arrive (an event may be split across reads, or several may come in
    one); each complete `data:` line is parsed once, with orjson.
    """

    def __init__(self) -> None:
        self.finish: str | None = None
        self.usage = Usage()
        self.is_done = False
        self._partial = b""

    def feed(self, data: bytes) -> list[Delta]:
        """The Deltas of every line completed by `data`."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        deltas = []
        for line in lines:
            delta = self._read(line)
            if delta is not None:
                deltas.append(delta)
        return deltas

    def _read(self, line: bytes) -> Delta | None:
        if not line.startswith(b"data:") or self.is_done:
            return None  # blank separators, comments, `event:` lines, anything after [DONE]
        data = line[5:].strip()
        if data == b"[DONE]":
            self.is_done = True
            return None
        chunk = orjson.loads(data)
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        text = ""
        for choice in chunk.get("choices") or ():
            self.finish = choice.get("finish_reason") or self.finish
            text += (choice.get("delta") or {}).get("content") or ""
        return Delta(text=text) if text else None

    def last(self) -> Delta:
        reason = "length" if self.finish == "length" else "stop"
        return Delta(text="", finish_reason=reason, usage=self.usage)


class AsyncDeltas:
    """The Deltas of one upstream stream; `aclose()` releases the connection at any point."""

    def __init__(self, model: UpstreamChatModel, response: aiohttp.ClientResponse) -> None:
        self._model = model
        self._response = response
        self._reader = _SseReader()
        self._ready: collections.deque[Delta] = collections.deque()
        self._is_finished = False

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self

    async def __anext__(self) -> Delta:
        if self._ready:
            return self._ready.popleft()
        if self._is_finished:
            raise StopAsyncIteration
        with _upstream_errors(self._model):
            while not self._reader.is_done:
                data = await self._response.content.readany()
                if not data:
                    break  # the upstream closed the stream
                self._ready.extend(self._reader.feed(data))
                if self._ready:
                    return self._ready.popleft()
        self._is_finished = True
        await self.aclose()
        return self._reader.last()

    async def aclose(self) -> None:
        """Close the upstream response (stops the upstream's generation)."""
        if not self._is_finished:
            self._response.close()  # drop the connection: the upstream sees the client leave
        self._response.release()


def _completion(payload: dict[str, Any]) -> Completion:
    choice = payload["choices"][0]
    return Completion(
        text=(choice.get("message") or {}).get("content") or "",
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        usage=_usage(payload.get("usage") or {}),
    )


def _usage(reported: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=int(reported.get("prompt_tokens") or 0),
        completion_tokens=int(reported.get("completion_tokens") or 0),
    )


def _where(model: UpstreamChatModel) -> str:
    return f"upstream {model.base_url} (model {model.model!r})"


@contextmanager
def _upstream_errors(model: UpstreamChatModel) -> Iterator[None]:
    """Turn transport failures and unreadable answers into FeilunErrors naming the upstream."""
    try:
        yield
    except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as e:
        raise BackendUnavailable(
            f"cannot reach {_where(model)}: {e!r}", "check the server is running and the URL"
        ) from e
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise BackendUnavailable(
            f"{_where(model)} sent an answer that is not OpenAI's format: {e!r}",
            "check the URL points at an OpenAI-compatible /v1 endpoint",
        ) from e


def _raise_for_status(
    model: UpstreamChatModel, status: int, text: str, headers: Mapping[str, str]
) -> None:
    """An error status from the upstream as the FeilunError a client can act on."""
    if status < 400:
        return
    where = _where(model)
    try:
        message = str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = text[:200]
    if status in (401, 403):
        raise ConfigError(
            f"{where} refused the API key ({status}: {message})",
            "export the key in the variable named by the model's meta.api_key_env",
        )
    if status == 404:
        raise NotFound(
            f"{where} does not serve that model: {message}", "list its models at GET /models"
        )
    if status == 429:
        error = QuotaExceeded(f"{where} is rate limiting: {message}", "retry later")
        error.retry_after_s = float(headers.get("retry-after") or 1)  # type: ignore[attr-defined]
        raise error
    if status < 500:
        raise ConfigError(f"{where} rejected the request ({status}): {message}", "fix the request")
    raise BackendUnavailable(
        f"{where} failed ({status}): {message}", "retry, or check the upstream"
    )


def load_runtime(record: BaseModel, cache_dir: Path) -> UpstreamChatModel:
    """Build the upstream ChatModel of a registered `upstream` model."""
    key_env = str(record.meta.get("api_key_env") or DEFAULT_KEY_ENV)
    return UpstreamChatModel(
        record.location,
        str(record.meta.get("upstream_model") or record.name),
        api_key=os.environ.get(key_env, "no-key"),
        name=record.name,
    )
