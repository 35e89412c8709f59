from __future__ import annotations

import time

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
