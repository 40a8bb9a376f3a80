"""Broadcasts: one text sent to a segment of the customers, one row per recipient."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class Segment(enum.StrEnum):
    """Who a broadcast goes to (banned, deleted and unreachable customers never do)."""

    ALL = "all"
    ACTIVE = "active"  # a subscription running now
    EXPIRED = "expired"  # a subscription that has run out
    NEVER_PAID = "never-paid"  # no succeeded payment ever


class BroadcastStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class RecipientStatus(enum.StrEnum):
    PENDING = "pending"
    # Marked before the message goes out and committed: after a kill -9 an in-flight
    # row is never sent again (it may or may not have arrived; the broadcast says so).
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # cancelled before it was sent


@attrs.frozen
class Broadcast:
    id: int | None
    segment: Segment
    text: str
    status: BroadcastStatus
    created_at: datetime
    finished_at: datetime | None = None


@attrs.frozen
class BroadcastProgress:
    """Counts of recipients by state, read from the database."""

    broadcast: Broadcast
    pending: int = 0
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.in_flight + self.sent + self.failed + self.skipped


@attrs.frozen
class Recipient:
    """A recipient claimed for sending: the customer and the chat to send to."""

    broadcast_id: int
    customer_id: int
    telegram_id: int
