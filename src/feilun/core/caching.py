"""`TtlCache`: a small thread-safe map whose entries expire, for hot lookups on every request.

What it holds may be up to `ttl_s` stale (a revoked key, a moved alias, a new price): callers
choose a ttl they can live with. A ttl of 0 turns caching off. `get_or_refresh` keeps hot
keys off the slow path: an entry just past its ttl is still served while a background
thread reloads it, so only a cold key waits for its load (see `core.blocking`). The reloads
run on two long-lived threads shared by every cache: starting a thread per reload would stall
the event loop until the new thread first let go of the GIL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from feilun.core.blocking import ensure_may_block

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_reloads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feilun-cache-reload")


class TtlCache(Generic[K, V]):
    """Entries live `ttl_s` seconds; past `max_entries` the whole cache is dropped."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[float, V]] = {}
        self._refreshing: set[K] = set()

    def get(self, key: K) -> V | None:
        """The live value of `key`, or None."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def get_or_refresh(self, key: K, load: Callable[[], V]) -> V:
        """The value of `key`: live; else stale while a thread reloads it; else loaded now.

        A stale entry is served for at most one more ttl (so a change shows within 2 ttl).
        When the background load fails, the entry is dropped and the next call loads (and
        raises) itself.
        """
        with self._lock:
            entry = self._entries.get(key)
            now = time.monotonic()
            if entry is not None and entry[0] > now:
                return entry[1]
            is_stale = entry is not None and entry[0] + self.ttl_s > now
            if is_stale and key not in self._refreshing:
                self._refreshing.add(key)
                _reloads.submit(self._refresh, key, load)
        if is_stale:
            assert entry is not None
            return entry[1]
        ensure_may_block()
        return self.put(key, load())

    def _refresh(self, key: K, load: Callable[[], V]) -> None:
        try:
            self.put(key, load())
        except Exception:
            logger.debug("reloading %r failed; the next call loads it", key, exc_info=True)
            with self._lock:
                self._entries.pop(key, None)
        finally:
            with self._lock:
                self._refreshing.discard(key)

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
