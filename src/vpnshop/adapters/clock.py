"""Production implementations of the time and randomness ports (``vpnshop.ports.clock``)."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vpnshop.ports.clock import Clock, IdGenerator

__all__ = ["CROCKFORD", "SystemClock", "UlidIds"]

# Crockford's base32: no I, L, O or U, so ids survive being read aloud or retyped.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_TIME_BITS = 48


class SystemClock:
    """The wall clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(CROCKFORD[digit])
    return "".join(reversed(chars))


class UlidIds:
    """26-character ULIDs: 48 bits of milliseconds since the epoch, then 80 random bits,
    in Crockford base32, so that string order is creation order.

    Within one millisecond the random part is incremented instead of drawn again (the ULID
    "monotonic" rule), so ids made by this generator sort in the order they were made even
    when many are made per millisecond. *clock* defaults to the system clock.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()  # a generator may be shared with worker threads
        self._last_ms = -1
        self._last_random = 0

    def new_id(self) -> str:
        ms = int(self._clock.now().timestamp() * 1000)
        with self._lock:
            if ms <= self._last_ms:
                # Same (or an earlier, if the wall clock stepped back) millisecond: keep
                # the last time and count up, so ids never go backwards.
                ms = self._last_ms
                rand = self._last_random + 1
                if rand >= 1 << _RANDOM_BITS:
                    ms += 1  # 2^80 ids in one millisecond will not happen; stay sorted anyway
                    rand = secrets.randbits(_RANDOM_BITS - 1)
            else:
                # One bit of headroom leaves room to count up within the millisecond.
                rand = secrets.randbits(_RANDOM_BITS - 1)
            self._last_ms, self._last_random = ms, rand
        if ms >= 1 << _TIME_BITS:
            raise OverflowError("the ULID time field ends in the year 10889")
        return _encode(ms, 10) + _encode(rand, 16)

    def token(self, nbytes: int = 16) -> str:
        return secrets.token_urlsafe(nbytes)


if TYPE_CHECKING:
    _clock: Clock = SystemClock()
    _ids: IdGenerator = UlidIds()
