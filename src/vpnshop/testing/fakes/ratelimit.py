"""A sliding-window rate limiter in memory."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from vpnshop.ports.clock import Clock
from vpnshop.ports.ratelimit import RateLimiter


class FakeRateLimiter:
    """A sliding-window limiter in memory, driven by *clock*: at most *limit* grants per
    key in any window of *per_seconds*. Records every call and its answer."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._grants: dict[str, deque[datetime]] = {}
        self.calls: list[tuple[str, float]] = []

    async def acquire(self, key: str, limit: int, per_seconds: float) -> float:
        now = self._clock.now()
        window = timedelta(seconds=per_seconds)
        grants = self._grants.setdefault(key, deque())
        while grants and grants[0] <= now - window:
            grants.popleft()
        if len(grants) < limit:
            grants.append(now)
            wait = 0.0
        elif limit <= 0:
            wait = per_seconds
        else:
            # The slot frees when the oldest grant still counted leaves the window.
            wait = max((grants[len(grants) - limit] + window - now).total_seconds(), 0.0)
        self.calls.append((key, wait))
        return wait


if TYPE_CHECKING:
    from vpnshop.testing.fakes.clock import FakeClock

    _limiter: RateLimiter = FakeRateLimiter(FakeClock())
