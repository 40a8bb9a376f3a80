"""Subscriptions, and the once-ever trial claim."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo, prepared
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.plan import TrafficReset
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage_jobs import DueSubscription, ScanCursor


def _subscription(r: Row) -> Subscription:
    return Subscription(
        id=r.id,
        customer_id=r.customer_id,
        plan_code=r.plan_code,
        expires_at=r.expires_at,
        traffic_limit_bytes=r.traffic_limit_bytes,
        traffic_reset=TrafficReset(r.traffic_reset),
        device_limit=r.device_limit,
        squads=tuple(r.squads),
        is_trial=r.is_trial,
        enabled=r.enabled,
        auto_renew=r.auto_renew,
        panel_key=r.panel_key,
        panel_username=r.panel_username,
        subscription_url=r.subscription_url,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _subscription_values(s: Subscription) -> dict[str, Any]:
    return {
        "customer_id": s.customer_id,
        "plan_code": s.plan_code,
        "expires_at": s.expires_at,
        "traffic_limit_bytes": s.traffic_limit_bytes,
        "traffic_reset": s.traffic_reset.value,
        "device_limit": s.device_limit,
        "squads": list(s.squads),
        "is_trial": s.is_trial,
        "enabled": s.enabled,
        "auto_renew": s.auto_renew,
        "panel_key": s.panel_key,
        "panel_username": s.panel_username,
        "subscription_url": s.subscription_url,
        "created_at": s.created_at or s.expires_at,
        "updated_at": s.updated_at or s.created_at or s.expires_at,
    }


_BY_ID = prepared(
    sa.select(t.subscriptions).where(t.subscriptions.c.id == sa.bindparam("subscription_id"))
)
_FOR_CUSTOMER = prepared(
    sa.select(t.subscriptions)
    .where(t.subscriptions.c.customer_id == sa.bindparam("customer_id"))
    .order_by(t.subscriptions.c.id.desc())
)
_TRIAL_USED = prepared(
    sa.select(t.trials.c.customer_id).where(t.trials.c.customer_id == sa.bindparam("customer_id"))
)


class SqlSubscriptions(_Repo):
    async def add(self, subscription: Subscription) -> Subscription:
        values = _subscription_values(subscription)
        row = await self._one(
            self._insert(t.subscriptions)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["customer_id"])
            .returning(t.subscriptions)
        )
        if row is None:
            raise ConflictError(f"customer {subscription.customer_id} has a subscription")
        return _subscription(row)

    async def get(self, subscription_id: int, *, for_update: bool = False) -> Subscription | None:
        stmt = _BY_ID
        if for_update and self._pg:
            stmt = stmt.with_for_update()
        row = await self._one(stmt, {"subscription_id": subscription_id})
        return _subscription(row) if row else None

    async def for_customer(self, customer_id: int) -> list[Subscription]:
        rows = await self._all(_FOR_CUSTOMER, {"customer_id": customer_id})
        return [_subscription(r) for r in rows]

    async def update(self, subscription: Subscription) -> None:
        values = _subscription_values(subscription)
        del values["created_at"]
        await self._conn.execute(
            sa.update(t.subscriptions)
            .where(t.subscriptions.c.id == subscription.id)
            .values(**values)
        )

    async def set_panel_link(
        self,
        subscription_id: int,
        *,
        panel_key: str,
        panel_username: str,
        subscription_url: str | None,
    ) -> None:
        await self._conn.execute(
            sa.update(t.subscriptions)
            .where(t.subscriptions.c.id == subscription_id)
            .values(
                panel_key=panel_key,
                panel_username=panel_username,
                subscription_url=subscription_url,
            )
        )

    async def page(self, after_id: int = 0, limit: int = 500) -> list[Subscription]:
        c = t.subscriptions.c
        stmt = sa.select(t.subscriptions).where(c.id > after_id).order_by(c.id).limit(limit)
        return [_subscription(r) for r in await self._all(stmt)]

    async def expiring_between(self, start: datetime, end: datetime) -> list[Subscription]:
        stmt = (
            sa.select(t.subscriptions)
            .where(t.subscriptions.c.expires_at >= start, t.subscriptions.c.expires_at < end)
            .order_by(t.subscriptions.c.expires_at)
        )
        return [_subscription(r) for r in await self._all(stmt)]

    async def set_auto_renew(self, subscription_id: int, auto_renew: bool) -> bool:
        c = t.subscriptions.c
        row = await self._one(
            sa.update(t.subscriptions)
            .where(c.id == subscription_id, c.auto_renew != auto_renew)
            .values(auto_renew=auto_renew)
            .returning(c.id)
        )
        return row is not None

    async def due(
        self,
        after: ScanCursor,
        until: datetime,
        *,
        limit: int,
        auto_renew_only: bool = False,
    ) -> list[DueSubscription]:
        stmt = due_statement(after, until, limit=limit, auto_renew_only=auto_renew_only)
        return [
            DueSubscription(_subscription(r), r.telegram_id, bool(r.reachable))
            for r in await self._all(stmt)
        ]


def due_statement(
    after: ScanCursor, until: datetime, *, limit: int, auto_renew_only: bool = False
) -> sa.Select[Any]:
    """The due-scan: a range of ``ix_subscriptions_expires_at`` bounded by the cursor and
    *until* (the plain lower bound is for SQLite, which does not derive it from the row
    comparison), in keyset order,
    each row's customer found by its key (tests EXPLAIN it on PostgreSQL)."""
    s, c = t.subscriptions.c, t.customers.c
    reachable = sa.and_(~c.banned, ~c.unreachable, c.deleted_at.is_(None))
    stmt = (
        sa.select(t.subscriptions, c.telegram_id, reachable.label("reachable"))
        .join(t.customers, c.id == s.customer_id)
        .where(
            sa.tuple_(s.expires_at, s.id)
            > sa.tuple_(sa.literal(after[0], t.UtcDateTime), after[1]),
            s.expires_at >= sa.literal(after[0], t.UtcDateTime),  # the index's lower bound
            s.expires_at <= until,
        )
        .order_by(s.expires_at, s.id)
        .limit(limit)
    )
    return stmt.where(s.auto_renew) if auto_renew_only else stmt


class SqlTrials(_Repo):
    async def claim(self, customer_id: int, now: datetime) -> bool:
        stmt = (
            self._insert(t.trials)
            .values(customer_id=customer_id, claimed_at=now)
            .on_conflict_do_nothing(index_elements=["customer_id"])
            .returning(t.trials.c.customer_id)
        )
        return await self._one(stmt) is not None

    async def reset(self, customer_id: int) -> None:
        await self._conn.execute(sa.delete(t.trials).where(t.trials.c.customer_id == customer_id))

    async def used(self, customer_id: int) -> bool:
        return await self._one(_TRIAL_USED, {"customer_id": customer_id}) is not None
