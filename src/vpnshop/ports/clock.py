"""Time and randomness are ports, so that tests can freeze them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A fresh unique id (sortable by creation time), safe in URLs and payloads."""
        ...

    def token(self, nbytes: int = 16) -> str:
        """A random URL-safe token (referral codes, secrets)."""
        ...
