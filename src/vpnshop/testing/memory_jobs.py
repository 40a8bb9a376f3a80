"""The in-memory store's customer-job repositories: due-scan cursors, broadcasts, and the
due-scan itself (kept apart from ``memory.py`` to keep modules small)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from vpnshop.domain.broadcast import (
    Broadcast,
    BroadcastProgress,
    BroadcastStatus,
    Recipient,
    RecipientStatus,
    Segment,
)
from vpnshop.domain.payment import PaymentStatus
from vpnshop.ports.storage_jobs import DueSubscription, ScanCursor

if TYPE_CHECKING:
    from vpnshop.testing.memory import MemoryUnitOfWork

PAID = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


def due_scan(
    state: Any, after: ScanCursor, until: datetime, limit: int, auto_renew_only: bool
) -> list[DueSubscription]:
    """The memory store's ``SubscriptionRepository.due``."""
    found = sorted(
        (
            s
            for s in state.subscriptions.values()
            if (s.expires_at, s.id) > after
            and s.expires_at <= until
            and (s.auto_renew or not auto_renew_only)
        ),
        key=lambda s: (s.expires_at, s.id),
    )[:limit]
    out = []
    for s in found:
        c = state.customers[s.customer_id]
        ok = not c.banned and not c.unreachable and c.deleted_at is None
        out.append(DueSubscription(s, c.telegram_id, ok))
    return out


class _Repo:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> Any:
        return self._uow.state


class MemoryCursors(_Repo):
    async def claim(self, name: str, initial: ScanCursor) -> ScanCursor:
        return self._s.cursors.setdefault(name, initial)  # type: ignore[no-any-return]

    async def move(self, name: str, position: ScanCursor) -> None:
        self._s.cursors[name] = position


class MemoryBroadcasts(_Repo):
    async def add(self, broadcast: Broadcast) -> Broadcast:
        stored = attrs.evolve(broadcast, id=self._s.next_id("broadcasts"))
        self._s.broadcasts[stored.id] = stored
        return stored

    def _in_segment(self, customer_id: int, segment: Segment, now: datetime) -> bool:
        s = self._s
        subs = [x for x in s.subscriptions.values() if x.customer_id == customer_id]
        if segment is Segment.ACTIVE:
            return any(x.enabled and x.expires_at > now for x in subs)
        if segment is Segment.EXPIRED:
            return any(x.expires_at <= now for x in subs)
        if segment is Segment.NEVER_PAID:
            return not any(
                p.customer_id == customer_id and p.status in PAID for p in s.payments.values()
            )
        return True

    async def add_recipients(self, broadcast_id: int, segment: Segment, now: datetime) -> int:
        n = 0
        for c in self._s.customers.values():
            if c.banned or c.unreachable or c.deleted_at is not None:
                continue
            if self._in_segment(c.id, segment, now):
                self._s.recipients[(broadcast_id, c.id)] = (c.telegram_id, "pending", None)
                n += 1
        return n

    async def get(self, broadcast_id: int) -> Broadcast | None:
        return self._s.broadcasts.get(broadcast_id)  # type: ignore[no-any-return]

    async def running(self) -> list[Broadcast]:
        found = [b for b in self._s.broadcasts.values() if b.status is BroadcastStatus.RUNNING]
        return sorted(found, key=lambda b: b.id)

    def _counts(self, b: Broadcast) -> BroadcastProgress:
        counts: dict[str, int] = {}
        for (bid, _), (_, status, _) in self._s.recipients.items():
            if bid == b.id:
                counts[status] = counts.get(status, 0) + 1
        return BroadcastProgress(
            broadcast=b,
            pending=counts.get("pending", 0),
            in_flight=counts.get("in_flight", 0),
            sent=counts.get("sent", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
        )

    async def progress(self, broadcast_id: int) -> BroadcastProgress | None:
        b = self._s.broadcasts.get(broadcast_id)
        return None if b is None else self._counts(b)

    async def recent(self, limit: int = 20) -> list[BroadcastProgress]:
        found = sorted(self._s.broadcasts.values(), key=lambda b: b.id, reverse=True)[:limit]
        return [self._counts(b) for b in found]

    async def set_status(
        self, broadcast_id: int, expected: BroadcastStatus, to: BroadcastStatus, now: datetime
    ) -> bool:
        b = self._s.broadcasts.get(broadcast_id)
        if b is None or b.status is not expected:
            return False
        finished = None if to is BroadcastStatus.RUNNING else now
        self._s.broadcasts[broadcast_id] = attrs.evolve(b, status=to, finished_at=finished)
        return True

    async def next_recipient(
        self, broadcast_id: int, now: datetime, after: int = 0
    ) -> Recipient | None:
        found = await self.claim_recipients(broadcast_id, now, after, 1)
        return found[0] if found else None

    async def claim_recipients(
        self, broadcast_id: int, now: datetime, after: int, limit: int
    ) -> list[Recipient]:
        pending = sorted(
            cid
            for (bid, cid), (_, status, _) in self._s.recipients.items()
            if bid == broadcast_id and status == "pending" and cid > after
        )[: max(limit, 0)]
        claimed = []
        for cid in pending:
            tg, _, _ = self._s.recipients[(broadcast_id, cid)]
            self._s.recipients[(broadcast_id, cid)] = (tg, "in_flight", None)
            claimed.append(Recipient(broadcast_id, cid, tg))
        return claimed

    async def finish(
        self,
        broadcast_id: int,
        customer_id: int,
        to: RecipientStatus,
        now: datetime,
        error: str | None = None,
    ) -> bool:
        row = self._s.recipients.get((broadcast_id, customer_id))
        if row is None or row[1] != "in_flight":
            return False
        self._s.recipients[(broadcast_id, customer_id)] = (row[0], to.value, error)
        return True

    async def finish_many(
        self,
        broadcast_id: int,
        outcomes: Sequence[tuple[int, RecipientStatus, str | None]],
        now: datetime,
    ) -> int:
        return sum([await self.finish(broadcast_id, c, to, now, e) for c, to, e in outcomes])

    def _move_all(self, broadcast_id: int, src: str, to: str, error: str | None) -> int:
        n = 0
        for key, (tg, status, _) in list(self._s.recipients.items()):
            if key[0] == broadcast_id and status == src:
                self._s.recipients[key] = (tg, to, error)
                n += 1
        return n

    async def settle_in_flight(self, broadcast_id: int, now: datetime) -> int:
        return self._move_all(broadcast_id, "in_flight", "failed", "interrupted")

    async def skip_pending(self, broadcast_id: int, now: datetime) -> int:
        return self._move_all(broadcast_id, "pending", "skipped", None)
