"""The demo's clock: real time, plus the days the demo has travelled forward.

It keeps ticking (so retries and leases behave as they do in production) and jumps when
the demo travels, so the scheduler's reminders and auto-renewal come due within seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class TravellingClock:
    """A :class:`vpnshop.ports.clock.Clock` that runs with real time and can jump ahead."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def travel_to(self, when: datetime) -> timedelta:
        """Jump forward to *when* (never back); returns how far the clock moved."""
        step = max(timedelta(), when - self.now())
        self._offset += step
        return step
