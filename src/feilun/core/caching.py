"""`TtlCache`: a small thread-safe map whose entries expire, for hot lookups on every request.

What it holds may be up to `ttl_s` stale (a revoked key, a moved alias, a new price): callers
choose a ttl they can live with. A ttl of 0 turns caching off.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries live `ttl_s` seconds; past `max_entries` the whole cache is dropped."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The live value of `key`, or None."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, key: K, value: V) -> V:
        """Remember `value` for `ttl_s`; return it."""
        if self.ttl_s > 0:
            with self._lock:
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
                self._entries[key] = (time.monotonic() + self.ttl_s, value)
        return value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
