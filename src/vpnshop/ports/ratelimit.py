"""The rate limiter port: in memory for one process, shared (Redis) for replicas."""

from __future__ import annotations

from typing import Protocol


class RateLimiter(Protocol):
    async def acquire(self, key: str, limit: int, per_seconds: float) -> float:
        """Take one slot of *limit* per *per_seconds* for *key*.

        Returns 0.0 when granted, else the seconds to wait before asking again (nothing is
        taken then).
        """
        ...
