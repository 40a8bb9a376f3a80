"""Storage port parts of the customer jobs: due-scans over subscriptions with a cursor,
and broadcasts (see ``vpnshop.ports.storage`` for the contract every store keeps)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import attrs

from vpnshop.domain.broadcast import (
    Broadcast,
    BroadcastProgress,
    BroadcastStatus,
    Recipient,
    RecipientStatus,
    Segment,
)
from vpnshop.domain.subscription import Subscription

# Where a due-scan stopped: the (expires_at, id) of the last subscription it looked at.
# Keyset order, so each run reads only the rows past it (an index range scan).
ScanCursor = tuple[datetime, int]


@attrs.frozen
class DueSubscription:
    """A subscription a due-scan found, with what the job needs of its customer."""

    subscription: Subscription
    telegram_id: int
    reachable: bool  # not banned, not deleted, Telegram delivers to them


class CursorRepository(Protocol):
    """Named positions of due-scans (``job_cursors``)."""

    async def claim(self, name: str, initial: ScanCursor) -> ScanCursor:
        """The position of scan *name* (stored as *initial* when it has none), locked until
        the transaction ends: a second replica running the same scan waits, then reads
        where the first one stopped (PostgreSQL ``FOR UPDATE``; SQLite serialises)."""
        ...

    async def move(self, name: str, position: ScanCursor) -> None:
        """Store the new position (in the transaction that did the work up to it)."""
        ...


class DueScanRepository(Protocol):
    async def due(
        self,
        after: ScanCursor,
        until: datetime,
        *,
        limit: int,
        auto_renew_only: bool = False,
    ) -> list[DueSubscription]:
        """Subscriptions with ``(expires_at, id) > after`` and ``expires_at <= until``, in
        that order, at most *limit*: an index range scan whose cost follows the rows
        returned, not the table."""
        ...


class BroadcastRepository(Protocol):
    async def add(self, broadcast: Broadcast) -> Broadcast:
        """Store a new broadcast; returns it with its id."""
        ...

    async def add_recipients(self, broadcast_id: int, segment: Segment, now: datetime) -> int:
        """One PENDING row per customer in *segment* (never banned, deleted or unreachable
        ones), in one statement; returns how many."""
        ...

    async def get(self, broadcast_id: int) -> Broadcast | None: ...

    async def running(self) -> list[Broadcast]:
        """Broadcasts still sending, oldest first."""
        ...

    async def progress(self, broadcast_id: int) -> BroadcastProgress | None: ...

    async def recent(self, limit: int = 20) -> list[BroadcastProgress]:
        """The newest broadcasts with their progress (for /metrics)."""
        ...

    async def set_status(
        self, broadcast_id: int, expected: BroadcastStatus, to: BroadcastStatus, now: datetime
    ) -> bool:
        """Atomic. Move the broadcast from *expected* to *to*; False when it was not in
        *expected*."""
        ...

    async def next_recipient(
        self, broadcast_id: int, now: datetime, after: int = 0
    ) -> Recipient | None:
        """Atomic. Mark the next PENDING recipient (by customer id, past *after*) IN_FLIGHT
        and return it; None when none is left. Two senders never get the same recipient.
        A sender passes the last customer id it claimed as *after*, so the index is entered
        past the rows it has done (whose dead index entries would otherwise be read again
        on every claim until a vacuum)."""
        ...

    async def claim_recipients(
        self, broadcast_id: int, now: datetime, after: int, limit: int
    ) -> list[Recipient]:
        """Atomic. ``next_recipient`` for up to *limit* recipients at once, in customer id
        order: one statement for a sender's batch."""
        ...

    async def finish(
        self,
        broadcast_id: int,
        customer_id: int,
        to: RecipientStatus,
        now: datetime,
        error: str | None = None,
    ) -> bool:
        """Atomic. IN_FLIGHT -> *to*, or (for a message not sent, e.g. rate limited) back to
        PENDING; False when the row was not in flight."""
        ...

    async def finish_many(
        self,
        broadcast_id: int,
        outcomes: Sequence[tuple[int, RecipientStatus, str | None]],
        now: datetime,
    ) -> int:
        """``finish`` for many (customer id, status, error) at once, in few statements (one
        per distinct status and error); returns how many rows were in flight."""
        ...

    async def settle_in_flight(self, broadcast_id: int, now: datetime) -> int:
        """Rows left IN_FLIGHT by a sender that died: FAILED as "interrupted", never sent
        again (the message may have gone out). Returns how many."""
        ...

    async def skip_pending(self, broadcast_id: int, now: datetime) -> int:
        """PENDING -> SKIPPED (a cancelled broadcast); returns how many."""
        ...
