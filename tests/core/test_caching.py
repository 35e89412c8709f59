from __future__ import annotations

import threading
import time

import pytest

from feilun.core.caching import TtlCache


def test_entries_expire_after_ttl() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.05)
    assert cache.put("a", 1) == 1
    assert cache.get("a") == 1
    time.sleep(0.06)
    assert cache.get("a") is None


def test_zero_ttl_disables_caching() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_overflow_drops_everything_and_keeps_the_new_entry() -> None:
    cache: TtlCache[int, int] = TtlCache(ttl_s=60, max_entries=3)
    for i in range(3):
        cache.put(i, i)
    cache.put(99, 99)
    assert [cache.get(i) for i in range(3)] == [None, None, None]
    assert cache.get(99) == 99


def test_a_stale_entry_is_served_while_one_thread_reloads_it() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.2)
    released = threading.Event()
    loads: list[int] = []

    def slow_load() -> int:
        loads.append(1)
        released.wait(5)
        return 2

    assert cache.get_or_refresh("a", lambda: 1) == 1
    time.sleep(0.25)  # past the ttl, within the stale window
    assert cache.get_or_refresh("a", slow_load) == 1  # served at once, not after the load
    assert cache.get_or_refresh("a", slow_load) == 1
    released.set()
    deadline = time.monotonic() + 5
    while cache.get("a") != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get_or_refresh("a", slow_load) == 2
    assert len(loads) == 1  # one reload, however many callers saw the stale entry


def test_past_the_stale_window_the_caller_loads_itself() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.05)
    cache.get_or_refresh("a", lambda: 1)
    time.sleep(0.12)
    assert cache.get_or_refresh("a", lambda: 2) == 2


def test_a_failed_reload_drops_the_entry_so_the_next_call_raises() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.1)
    cache.get_or_refresh("a", lambda: 1)
    time.sleep(0.12)

    def gone() -> int:
        raise KeyError("a was removed")

    assert cache.get_or_refresh("a", gone) == 1
    deadline = time.monotonic() + 5
    while "a" in cache._entries and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(KeyError, match="removed"):
        cache.get_or_refresh("a", gone)
