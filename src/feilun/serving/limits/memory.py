"""The in-process limiter: one lock around sliding-window logs and token counters.

Right for a single server process; several processes sharing quotas need the Redis limiter.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from feilun.core.blocking import ensure_may_block
from feilun.serving.limits import COUNTER_TTL_S, RATE_WINDOW_S


class MemoryLimiter:
    """Thread-safe limiter holding its state in this process."""

    is_local = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # key → (value, expires at)

    def hit_rate(self, key: str, per_minute: int) -> float | None:
        """Take one slot of `key`'s last-60-s window: None if taken, else seconds to retry in."""
        with self._lock:
            now = self._clock()
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - RATE_WINDOW_S:
                hits.popleft()
            if len(hits) < per_minute:
                hits.append(now)
                return None
            if not hits:  # per_minute <= 0: nothing is ever let in
                return RATE_WINDOW_S
            return max(hits[0] + RATE_WINDOW_S - now, 0.001)

    def reserve(
        self, key: str, amount: int, limit: int | None, load_used: Callable[[], int]
    ) -> bool:
        """Add `amount` to counter `key` if it stays ≤ `limit`, atomically (seeded lazily)."""
        with self._lock:
            is_held = self._live(key)
        if not is_held:
            ensure_may_block()
        # Read the ledger outside the lock; if another thread seeded meanwhile, its value wins.
        seed = None if is_held else load_used()
        with self._lock:
            if not self._live(key):
                self._prune()
                self._counters[key] = (int(seed or 0), self._clock() + COUNTER_TTL_S)
            value, expires_at = self._counters[key]
            if limit is not None and value + amount > limit:
                return False
            self._counters[key] = (value + amount, expires_at)
            return True

    def release(self, key: str, amount: int) -> None:
        """Give `amount` back to counter `key`; it never goes below zero."""
        with self._lock:
            if self._live(key):
                value, expires_at = self._counters[key]
                self._counters[key] = (max(value - amount, 0), expires_at)

    def counter(self, key: str) -> int | None:
        """The current value of a counter (for tests and diagnostics)."""
        with self._lock:
            return self._counters[key][0] if self._live(key) else None

    def _live(self, key: str) -> bool:
        entry = self._counters.get(key)
        return entry is not None and entry[1] > self._clock()

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, (_, expires_at) in self._counters.items() if expires_at <= now]:
            del self._counters[key]
        for key in [
            k for k, hits in self._hits.items() if not hits or hits[-1] <= now - RATE_WINDOW_S
        ]:
            del self._hits[key]
