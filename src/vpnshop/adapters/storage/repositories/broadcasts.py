"""Broadcasts and their recipients: one row per recipient is the broadcast's progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo
from vpnshop.domain.broadcast import (
    Broadcast,
    BroadcastProgress,
    BroadcastStatus,
    Recipient,
    RecipientStatus,
    Segment,
)
from vpnshop.domain.payment import PaymentStatus

B = t.broadcasts.c
R = t.broadcast_recipients.c
PAID = (PaymentStatus.SUCCEEDED.value, PaymentStatus.REFUNDED.value)


def _broadcast(r: Row) -> Broadcast:
    return Broadcast(
        id=r.id,
        segment=Segment(r.segment),
        text=r.text,
        status=BroadcastStatus(r.status),
        created_at=r.created_at,
        finished_at=r.finished_at,
    )


def _segment_filter(segment: Segment, now: datetime) -> Any:
    c, s, p = t.customers.c, t.subscriptions.c, t.payments.c
    if segment is Segment.ACTIVE:
        return sa.exists().where(s.customer_id == c.id, s.enabled, s.expires_at > now)
    if segment is Segment.EXPIRED:
        return sa.exists().where(s.customer_id == c.id, s.expires_at <= now)
    if segment is Segment.NEVER_PAID:
        return ~sa.exists().where(p.customer_id == c.id, p.status.in_(PAID))
    return sa.true()


class SqlBroadcasts(_Repo):
    async def add(self, broadcast: Broadcast) -> Broadcast:
        row = await self._one(
            sa.insert(t.broadcasts)
            .values(
                segment=broadcast.segment.value,
                text=broadcast.text,
                status=broadcast.status.value,
                created_at=broadcast.created_at,
                finished_at=broadcast.finished_at,
            )
            .returning(t.broadcasts)
        )
        return _broadcast(row)

    async def add_recipients(self, broadcast_id: int, segment: Segment, now: datetime) -> int:
        c = t.customers.c
        chosen = sa.select(
            sa.literal(broadcast_id, BigIdLiteral),
            c.id,
            c.telegram_id,
            sa.literal(RecipientStatus.PENDING.value),
            sa.literal(now, t.UtcDateTime),
        ).where(~c.banned, ~c.unreachable, c.deleted_at.is_(None), _segment_filter(segment, now))
        result = await self._conn.execute(
            sa.insert(t.broadcast_recipients).from_select(
                ["broadcast_id", "customer_id", "telegram_id", "status", "updated_at"], chosen
            )
        )
        if self._pg:
            # Statistics now, not at autovacuum's next round: a sender claiming from a
            # table the planner has never analyzed ran each batch's statements 5-10x slower
            # for its first minute (100,000 recipients).
            await self._conn.execute(sa.text("ANALYZE broadcast_recipients"))
        return int(result.rowcount or 0)

    async def get(self, broadcast_id: int) -> Broadcast | None:
        row = await self._one(sa.select(t.broadcasts).where(B.id == broadcast_id))
        return _broadcast(row) if row else None

    async def running(self) -> list[Broadcast]:
        stmt = (
            sa.select(t.broadcasts).where(B.status == BroadcastStatus.RUNNING.value).order_by(B.id)
        )
        return [_broadcast(r) for r in await self._all(stmt)]

    async def _counts(self, broadcast: Broadcast) -> BroadcastProgress:
        stmt = (
            sa.select(R.status, sa.func.count())
            .where(R.broadcast_id == broadcast.id)
            .group_by(R.status)
        )
        counts = {status: n for status, n in await self._all(stmt)}
        return BroadcastProgress(
            broadcast=broadcast,
            pending=counts.get(RecipientStatus.PENDING.value, 0),
            in_flight=counts.get(RecipientStatus.IN_FLIGHT.value, 0),
            sent=counts.get(RecipientStatus.SENT.value, 0),
            failed=counts.get(RecipientStatus.FAILED.value, 0),
            skipped=counts.get(RecipientStatus.SKIPPED.value, 0),
        )

    async def progress(self, broadcast_id: int) -> BroadcastProgress | None:
        broadcast = await self.get(broadcast_id)
        return None if broadcast is None else await self._counts(broadcast)

    async def recent(self, limit: int = 20) -> list[BroadcastProgress]:
        rows = await self._all(sa.select(t.broadcasts).order_by(B.id.desc()).limit(limit))
        return [await self._counts(_broadcast(r)) for r in rows]

    async def set_status(
        self, broadcast_id: int, expected: BroadcastStatus, to: BroadcastStatus, now: datetime
    ) -> bool:
        finished = None if to is BroadcastStatus.RUNNING else now
        row = await self._one(
            sa.update(t.broadcasts)
            .where(B.id == broadcast_id, B.status == expected.value)
            .values(status=to.value, finished_at=finished)
            .returning(B.id)
        )
        return row is not None

    async def next_recipient(
        self, broadcast_id: int, now: datetime, after: int = 0
    ) -> Recipient | None:
        found = await self.claim_recipients(broadcast_id, now, after, 1)
        return found[0] if found else None

    async def claim_recipients(
        self, broadcast_id: int, now: datetime, after: int, limit: int
    ) -> list[Recipient]:
        pending = (
            sa.select(R.customer_id)
            .where(
                R.broadcast_id == broadcast_id,
                R.status == RecipientStatus.PENDING.value,
                R.customer_id > after,
            )
            .order_by(R.customer_id)
            .limit(limit)
        )
        if self._pg:
            pending = pending.with_for_update(skip_locked=True)
        # Materialized, so the pick runs once: as a plain IN subquery PostgreSQL may run it
        # again per row, skip the rows this statement just locked, and claim them all.
        picked = pending.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        rows = await self._all(
            sa.update(t.broadcast_recipients)
            .where(
                R.broadcast_id == broadcast_id,
                R.customer_id.in_(sa.select(picked.c.customer_id)),
                R.status == RecipientStatus.PENDING.value,
            )
            .values(status=RecipientStatus.IN_FLIGHT.value, updated_at=now)
            .returning(R.customer_id, R.telegram_id)
        )
        return sorted(
            (Recipient(broadcast_id, r.customer_id, r.telegram_id) for r in rows),
            key=lambda r: r.customer_id,
        )

    async def finish(
        self,
        broadcast_id: int,
        customer_id: int,
        to: RecipientStatus,
        now: datetime,
        error: str | None = None,
    ) -> bool:
        row = await self._one(
            sa.update(t.broadcast_recipients)
            .where(
                R.broadcast_id == broadcast_id,
                R.customer_id == customer_id,
                R.status == RecipientStatus.IN_FLIGHT.value,
            )
            .values(status=to.value, updated_at=now, error=error[:200] if error else None)
            .returning(R.customer_id)
        )
        return row is not None

    async def finish_many(
        self,
        broadcast_id: int,
        outcomes: Sequence[tuple[int, RecipientStatus, str | None]],
        now: datetime,
    ) -> int:
        groups: dict[tuple[RecipientStatus, str | None], list[int]] = {}
        for customer_id, to, error in outcomes:
            groups.setdefault((to, error[:200] if error else None), []).append(customer_id)
        n = 0
        for (to, error), customer_ids in groups.items():
            result = await self._conn.execute(
                sa.update(t.broadcast_recipients)
                .where(
                    R.broadcast_id == broadcast_id,
                    R.customer_id.in_(customer_ids),
                    R.status == RecipientStatus.IN_FLIGHT.value,
                )
                .values(status=to.value, updated_at=now, error=error)
            )
            n += int(result.rowcount or 0)
        return n

    async def _move_all(
        self,
        broadcast_id: int,
        src: RecipientStatus,
        to: RecipientStatus,
        now: datetime,
        error: str | None,
    ) -> int:
        result = await self._conn.execute(
            sa.update(t.broadcast_recipients)
            .where(R.broadcast_id == broadcast_id, R.status == src.value)
            .values(status=to.value, updated_at=now, error=error)
        )
        return int(result.rowcount or 0)

    async def settle_in_flight(self, broadcast_id: int, now: datetime) -> int:
        return await self._move_all(
            broadcast_id, RecipientStatus.IN_FLIGHT, RecipientStatus.FAILED, now, "interrupted"
        )

    async def skip_pending(self, broadcast_id: int, now: datetime) -> int:
        return await self._move_all(
            broadcast_id, RecipientStatus.PENDING, RecipientStatus.SKIPPED, now, None
        )


BigIdLiteral = sa.BigInteger()
