"""Rate limits and token reservations: the `Limiter` Protocol and `build_limiter`.

Every check-and-take is one atomic step inside the limiter (a lock in-process, a Lua script
in Redis), so requests racing for the last tokens or the last slot of a minute never overspend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

#: Token counters are keyed per UTC day; they outlive the day a little, then expire.
COUNTER_TTL_S = 2 * 24 * 3600
RATE_WINDOW_S = 60.0


class Limiter(Protocol):
    """Atomic sliding-window rate limits and token counters, shared by every request."""

    #: True when the state lives in this process, so calls never wait on a network.
    is_local: bool

    def hit_rate(self, key: str, per_minute: int) -> float | None:
        """Take one slot of `key`'s last-60-s window: None if taken, else seconds to retry in."""
        ...

    def reserve(
        self, key: str, amount: int, limit: int | None, load_used: Callable[[], int]
    ) -> bool:
        """Add `amount` to counter `key` if it stays ≤ `limit` (None: no limit), atomically.

        A counter the limiter does not hold yet starts at `load_used()` (the tokens already
        billed, read from the usage ledger).
        """
        ...

    def release(self, key: str, amount: int) -> None:
        """Give `amount` back to counter `key`; it never goes below zero."""
        ...


def build_limiter(redis_url: str) -> Limiter:
    """The Redis limiter when `redis_url` (FEILUN_REDIS_URL) is set, else the in-process one."""
    if redis_url:
        from feilun.serving.limits.redis import RedisLimiter

        return RedisLimiter.from_url(redis_url)
    from feilun.serving.limits.memory import MemoryLimiter

    return MemoryLimiter()
