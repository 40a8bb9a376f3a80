"""Time and ids that move only when a test says so."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from vpnshop.ports.clock import Clock, IdGenerator

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to. Always timezone-aware UTC."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _utc(when)

    def advance(self, delta: timedelta | float = 0.0, /, **kwargs: float) -> datetime:
        """Move forward by *delta* (a timedelta or seconds) and/or ``timedelta`` keyword
        arguments (``advance(days=3)``); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self._now += step + timedelta(**kwargs)
        return self._now


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("FakeClock takes timezone-aware datetimes only")
    return when.astimezone(UTC)


class SequentialIds:
    """Deterministic ids ``p000001``, ``p000002``... (sortable) and tokens ``tok000001``..."""

    def __init__(
        self,
        prefix: str = "p",
        token_prefix: str = "tok",  # noqa: S107 - a prefix, not a secret
        width: int = 6,
    ) -> None:
        self.prefix = prefix
        self.token_prefix = token_prefix
        self.width = width
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self.issued: list[str] = []

    def new_id(self) -> str:
        value = f"{self.prefix}{next(self._ids):0{self.width}d}"
        self.issued.append(value)
        return value

    def token(self, nbytes: int = 16) -> str:
        return f"{self.token_prefix}{next(self._tokens):0{self.width}d}"


if TYPE_CHECKING:
    _clock: Clock = FakeClock()
    _ids: IdGenerator = SequentialIds()
