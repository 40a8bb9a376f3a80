"""A per-process cache of who a Telegram user is (``Customer``: id, language, banned), so
that an update of a known customer costs no database read before its handler.

An entry lives ``ttl`` seconds. This process drops an entry itself when it changes what
the entry says (language switch; a ban, once the admin bot bans here). A change made by
another process (a ban from the CLI or another replica) is seen at most ``ttl`` seconds
late: until then the banned customer's screens still open, but every use case that buys,
pays or redeems reads the customer in its own transaction and refuses them. ``/start``
always reads the database (and refreshes the entry)."""

from __future__ import annotations

import time
from collections.abc import Callable

from vpnshop.domain.customer import Customer

MAX_CACHED = 100_000  # users; expired entries are dropped when it is reached


class CustomerCache:
    def __init__(self, ttl: float = 30.0, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.now = now
        self._entries: dict[int, tuple[float, Customer]] = {}  # telegram id -> (expiry, it)

    def get(self, telegram_id: int) -> Customer | None:
        entry = self._entries.get(telegram_id)
        if entry is None:
            return None
        if entry[0] <= self.now():
            del self._entries[telegram_id]
            return None
        return entry[1]

    def put(self, customer: Customer) -> None:
        now = self.now()
        if len(self._entries) >= MAX_CACHED:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        self._entries[customer.telegram_id] = (now + self.ttl, customer)

    def forget(self, telegram_id: int) -> None:
        """Drop the entry: the next update reads the customer from the database."""
        self._entries.pop(telegram_id, None)
