"""Server-sent events for streamed completions, driven from worker threads.

A model's `stream()` is a blocking iterator: each step runs in a worker thread so the event
loop stays free. `EventStream` always closes its body (also when the client goes away), so the
route's cleanup — settling the bill for what was actually sent — runs every time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
_END = object()


def sse_event(data: dict[str, Any]) -> bytes:
    """One `data:` event carrying a JSON object."""
    return (
        b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


async def next_in_thread(iterator: Iterator[T]) -> T | None:
    """The iterator's next item computed in a worker thread; None when it is exhausted."""
    item = await anyio.to_thread.run_sync(next, iterator, _END)
    return None if item is _END else item  # type: ignore[return-value]


async def close_in_thread(iterator: Iterator[Any]) -> None:
    """Close a generator (releasing what it holds) in a worker thread, shielded from cancel."""
    close = getattr(iterator, "close", None)
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
