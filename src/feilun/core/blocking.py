"""Per-request work from an event loop: inline when it does not block, else in a worker thread.

Admitting a request usually only reads in-memory caches. A thread hop costs more than that
work, and on a busy machine each hop also waits for the scheduler to run the worker. So code
that is about to block (a database load, a Redis call, an audit write) first calls
`ensure_may_block()`: under `run_nonblocking` that raises `WouldBlock` before any side effect,
and the whole call runs again in a worker thread. Callers must keep that promise: nothing
that changes state may come before the first blocking step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

import anyio

T = TypeVar("T")

_MAY_BLOCK: ContextVar[bool] = ContextVar("feilun_may_block", default=True)


class WouldBlock(Exception):
    """Raised instead of blocking while `run_nonblocking` tries a call on the event loop."""


def may_block() -> bool:
    """False while `run_nonblocking` tries a call on the event loop."""
    return _MAY_BLOCK.get()


def ensure_may_block() -> None:
    """Call before blocking; raises WouldBlock while the caller must not block."""
    if not _MAY_BLOCK.get():
        raise WouldBlock


async def run_nonblocking(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` on the event loop if it never blocks, else in a worker thread."""
    token = _MAY_BLOCK.set(False)
    try:
        return function(*args)
    except WouldBlock:
        pass
    finally:
        _MAY_BLOCK.reset(token)
    return await anyio.to_thread.run_sync(function, *args)
