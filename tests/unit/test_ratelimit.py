"""The RateLimiter adapters: the sliding window in memory and in Redis (its Lua script
run by fakeredis's embedded Lua: no Redis server in the test machine)."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from vpnshop.adapters.ratelimit import MemoryRateLimiter, RedisRateLimiter
from vpnshop.ports.ratelimit import RateLimiter


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter()
    return RedisRateLimiter(fakeredis.FakeAsyncRedis())


async def test_grants_up_to_the_limit_then_says_how_long_to_wait(limiter: RateLimiter) -> None:
    """Three of three are granted, the fourth waits about the window; keys are separate."""
    assert [await limiter.acquire("a", 3, 60) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await limiter.acquire("a", 3, 60)
    assert 50 < wait <= 60  # the seconds until the oldest grant leaves the window
    assert await limiter.acquire("b", 3, 60) == 0.0


async def test_the_window_slides(limiter: RateLimiter) -> None:
    """A grant leaves the window after its seconds, freeing its slot."""
    assert await limiter.acquire("a", 1, 0.2) == 0.0
    assert await limiter.acquire("a", 1, 0.2) > 0
    await asyncio.sleep(0.25)
    assert await limiter.acquire("a", 1, 0.2) == 0.0


async def test_two_replicas_share_the_redis_window() -> None:
    """Two limiters on one Redis count together, as two bot replicas do."""
    redis = fakeredis.FakeAsyncRedis()
    one, two = RedisRateLimiter(redis), RedisRateLimiter(redis)
    assert await one.acquire("u", 2, 60) == 0.0
    assert await two.acquire("u", 2, 60) == 0.0
    assert await one.acquire("u", 2, 60) > 0
