"""Server-sent events for streamed completions.

A model's `stream()` is a blocking iterator: `InThreads` runs each step in a worker thread so
the event loop stays free (models with a native `astream`, such as upstream servers, skip the
threads). `EventStream` always closes its body (also when the client goes away), so the route's
cleanup — settling the bill for what was actually sent — runs every time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

import anyio
import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
_END = object()


def sse_event(data: dict[str, Any]) -> bytes:
    """One `data:` event carrying a JSON object (compact UTF-8, as `json.dumps` would write)."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


class InThreads(Generic[T]):
    """A blocking iterator as an async one: each `next()` in a worker thread.

    `aclose()` always closes the blocking iterator (releasing what it holds), even when it was
    never started — unlike an async generator's, whose `finally` would not run then.
    """

    def __init__(self, iterator: Iterator[T]) -> None:
        self._iterator = iterator

    def __aiter__(self) -> InThreads[T]:
        return self

    async def __anext__(self) -> T:
        item = await anyio.to_thread.run_sync(next, self._iterator, _END)
        if item is _END:
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Close the blocking iterator in a worker thread, shielded from cancellation."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


class EventStream(StreamingResponse):
    """A `text/event-stream` response whose body generator is always closed at the end."""

    body_iterator: AsyncIterator[bytes]

    def __init__(
        self,
        content: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        base = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=base | (headers or {}))
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream; on any exit (done, disconnect, cancel) close it, then `on_close`."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            with anyio.CancelScope(shield=True):
                if aclose is not None:
                    await aclose()
                if self.on_close is not None:
                    await self.on_close()
