"""The Redis limiter: each check-and-take is one Lua script, so many servers share quotas.

Keys live under a namespace (`feilun:` by default) and always carry a TTL; window times come
from the Redis server's clock, so servers with skewed clocks still agree.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from feilun.core.blocking import ensure_may_block
from feilun.core.errors import BackendUnavailable
from feilun.serving.limits import COUNTER_TTL_S, RATE_WINDOW_S

# KEYS[1] window; ARGV limit, window_ms, member. Returns -1 when taken, else ms to wait.
_HIT_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] == nil then return window end
return tonumber(oldest[2]) + window - now
"""
# KEYS[1] counter; ARGV amount, limit (-1: none). Returns -1 unseeded, 0 refused, 1 taken.
_RESERVE = """
local value = redis.call('GET', KEYS[1])
if not value then return -1 end
local limit = tonumber(ARGV[2])
if limit >= 0 and tonumber(value) + tonumber(ARGV[1]) > limit then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
return 1
"""
# KEYS[1] counter; ARGV amount. Clamped at zero; the TTL is kept.
_RELEASE = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local left = math.max(tonumber(value) - tonumber(ARGV[1]), 0)
redis.call('SET', KEYS[1], left, 'KEEPTTL')
return left
"""


class RedisLimiter:
    """Limiter state in Redis, shared by every server process pointed at it."""

    is_local = False

    def __init__(self, client: Any, namespace: str = "feilun:") -> None:
        self._client = client
        self._namespace = namespace
        self._hit_rate = client.register_script(_HIT_RATE)
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, namespace: str = "feilun:") -> RedisLimiter:
        """Connect to `redis://host:port/db`, failing now (not on the first request)."""
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        limiter = cls(client, namespace)
        limiter._call(client.ping, url)
        return limiter

    def hit_rate(self, key: str, per_minute: int) -> float | None:
        """Take one slot of `key`'s last-60-s window: None if taken, else seconds to retry in."""
        window_ms = int(RATE_WINDOW_S * 1000)
        member = secrets.token_hex(8)
        wait_ms = int(
            self._call(
                lambda: self._hit_rate(
                    keys=[self._key("rate", key)], args=[per_minute, window_ms, member]
                )
            )
        )
        return None if wait_ms < 0 else max(wait_ms, 1) / 1000

    def reserve(
        self, key: str, amount: int, limit: int | None, load_used: Callable[[], int]
    ) -> bool:
        """Add `amount` to counter `key` if it stays ≤ `limit`, atomically (seeded lazily)."""
        name = self._key("counter", key)
        args = [int(amount), -1 if limit is None else int(limit)]
        for _ in range(3):
            taken = int(self._call(lambda: self._reserve(keys=[name], args=args)))
            if taken >= 0:
                return taken == 1
            self._seed(name, int(load_used()))
        raise BackendUnavailable(
            f"the Redis counter {name} disappears as soon as it is set",
            "check the Redis server's maxmemory policy (keys must not be evicted at once)",
        )

    def _seed(self, name: str, used: int) -> None:
        # NX: a counter another server seeded meanwhile already holds the truth.
        self._call(lambda: self._client.set(name, used, nx=True, ex=COUNTER_TTL_S))

    def release(self, key: str, amount: int) -> None:
        """Give `amount` back to counter `key`; it never goes below zero."""
        name = self._key("counter", key)
        self._call(lambda: self._release(keys=[name], args=[int(amount)]))

    def _key(self, kind: str, key: str) -> str:
        return f"{self._namespace}{kind}:{key}"

    def _call(self, action: Callable[[], Any], where: str | None = None) -> Any:
        import redis

        ensure_may_block()
        try:
            return action()
        except redis.exceptions.ConnectionError as e:
            raise BackendUnavailable(
                f"cannot reach Redis {where or self._where()} for rate limits: {e}",
                "start Redis or fix FEILUN_REDIS_URL (unset it to use the in-process limiter)",
            ) from e

    def _where(self) -> str:
        kwargs = self._client.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
