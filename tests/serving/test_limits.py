"""Both limiters against their real backends: windows, reservations, and races for the last slot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from feilun.core.errors import BackendUnavailable
from feilun.serving.limits import Limiter, build_limiter
from feilun.serving.limits.memory import MemoryLimiter
from feilun.serving.limits.redis import RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_reserve_seeds_once_then_counts(limiter: Limiter) -> None:
    calls: list[int] = []

    def load_used() -> int:
        calls.append(1)
        return 90

    assert limiter.reserve("tokens:t:d", 10, 100, load_used)
    assert not limiter.reserve("tokens:t:d", 1, 100, load_used)
    assert calls == [1]
    limiter.release("tokens:t:d", 5)
    assert limiter.reserve("tokens:t:d", 5, 100, load_used)
    assert not limiter.reserve("tokens:t:d", 1, 100, load_used)
    assert limiter.reserve("tokens:t:d", 1_000, None, load_used)  # no limit: always taken


def test_release_never_goes_negative(limiter: Limiter) -> None:
    assert limiter.reserve("tokens:t:d", 10, 100, lambda: 0)
    limiter.release("tokens:t:d", 500)
    limiter.release("tokens:absent:d", 5)  # unknown counters are left alone
    assert limiter.reserve("tokens:t:d", 100, 100, lambda: 0)
    assert not limiter.reserve("tokens:t:d", 1, 100, lambda: 0)


def test_fifty_race_for_the_last_hundred_tokens(
    limiter: Limiter, race: Callable[..., list[Any]]
) -> None:
    limiter.reserve("tokens:race:d", 0, None, lambda: 900)
    taken = sum(race(50, lambda: limiter.reserve("tokens:race:d", 10, 1000, lambda: 0)))
    assert taken == 10


def test_rate_race_admits_exactly_the_limit(
    limiter: Limiter, race: Callable[..., list[Any]]
) -> None:
    taken = sum(race(30, lambda: limiter.hit_rate("rate:race", 12) is None))
    assert taken == 12
    wait_s = limiter.hit_rate("rate:race", 12)
    assert wait_s is not None and 55 < wait_s <= 60


def test_rate_limits_are_per_key(limiter: Limiter) -> None:
    assert limiter.hit_rate("rate:a", 1) is None
    assert limiter.hit_rate("rate:a", 1) is not None
    assert limiter.hit_rate("rate:b", 1) is None


def test_memory_window_slides() -> None:
    now = [1000.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    assert limiter.hit_rate("k", 2) is None
    now[0] += 30
    assert limiter.hit_rate("k", 2) is None
    assert limiter.hit_rate("k", 2) == pytest.approx(30)
    now[0] += 30.5  # the first hit left the window
    assert limiter.hit_rate("k", 2) is None
    assert limiter.hit_rate("k", 2) == pytest.approx(29.5)


def test_memory_counters_expire() -> None:
    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    assert limiter.reserve("c", 10, 10, lambda: 0)
    now[0] += 3 * 24 * 3600
    assert limiter.counter("c") is None
    assert limiter.reserve("c", 10, 10, lambda: 0)  # reseeded from the ledger


def test_redis_keys_are_namespaced_and_expire(redis_client: Any, redis_limiter: Any) -> None:
    redis_limiter.hit_rate("rate:x", 5)
    redis_limiter.reserve("tokens:x:d", 1, 10, lambda: 0)
    namespace = redis_limiter._namespace
    keys = {k.decode() for k in redis_client.scan_iter(match=namespace + "*")}
    assert keys == {namespace + "rate:rate:x", namespace + "counter:tokens:x:d"}
    assert all(0 < redis_client.ttl(k) <= 2 * 24 * 3600 for k in keys)


def test_build_limiter_picks_the_backend(redis_client: Any) -> None:
    assert isinstance(build_limiter(""), MemoryLimiter)
    assert isinstance(build_limiter(REDIS_URL), RedisLimiter)


def test_unreachable_redis_is_backend_unavailable() -> None:
    pytest.importorskip("redis")
    with pytest.raises(BackendUnavailable, match="FEILUN_REDIS_URL"):
        build_limiter("redis://127.0.0.1:1/0")
