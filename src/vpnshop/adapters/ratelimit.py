"""The RateLimiter port: a sliding window in memory (one process), or in Redis (replicas
share it). Redis is imported only when that one is built."""

from __future__ import annotations

import time
from collections import deque
from typing import Any


class MemoryRateLimiter:
    """At most *limit* grants per key in any window of *per_seconds* (monotonic time)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._grants: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    async def acquire(self, key: str, limit: int, per_seconds: float) -> float:
        now = time.monotonic()
        grants = self._grants.get(key)
        if grants is None:
            if len(self._grants) >= self._max_keys:
                self._forget_idle(now, per_seconds)
            grants = self._grants[key] = deque()
        while grants and grants[0] <= now - per_seconds:
            grants.popleft()
        if len(grants) < limit:
            grants.append(now)
            return 0.0
        if limit <= 0:
            return per_seconds
        return max(grants[len(grants) - limit] + per_seconds - now, 0.0)

    def _forget_idle(self, now: float, per_seconds: float) -> None:
        for key in [k for k, g in self._grants.items() if not g or g[-1] <= now - per_seconds]:
            del self._grants[key]


# One round trip: drop what left the window, count, add when under the limit.
_SCRIPT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RedisRateLimiter:
    """The same window in a Redis sorted set per key, shared by every replica."""

    def __init__(self, redis: Any, prefix: str = "vpnshop:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)
        self._n = 0

    async def acquire(self, key: str, limit: int, per_seconds: float) -> float:
        self._n += 1
        now = time.time()
        member = f"{now}:{id(self)}:{self._n}"
        wait = await self._script(keys=[self._prefix + key], args=[now, per_seconds, limit, member])
        return max(float(wait), 0.0)
