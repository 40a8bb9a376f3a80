"""The RateLimiter adapters: the sliding window in memory and in Redis (a real,
throwaway redis-server: see the ``redis_url`` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from vpnshop.adapters.ratelimit import MemoryRateLimiter, RedisRateLimiter
from vpnshop.ports.ratelimit import RateLimiter


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        yield RedisRateLimiter(redis)
    finally:
        await redis.aclose()


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


async def test_two_replicas_share_the_redis_window(redis_url: str) -> None:
    """Two limiters on their own connections to one Redis count together, as two bot
    replicas do."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        one, two = RedisRateLimiter(first), RedisRateLimiter(second)
        assert await one.acquire("u", 2, 60) == 0.0
        assert await two.acquire("u", 2, 60) == 0.0
        assert await one.acquire("u", 2, 60) > 0
    finally:
        await first.aclose()
        await second.aclose()
