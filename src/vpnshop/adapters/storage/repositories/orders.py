"""Orders."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.domain.order import Order, OrderKind


def _order(r: Row) -> Order:
    cur = currency_of(r.currency)
    return Order(
        id=r.id,
        customer_id=r.customer_id,
        kind=OrderKind(r.kind),
        amount=Money(r.amount_minor, cur),
        list_price=Money(r.list_minor, cur),
        plan_code=r.plan_code,
        days=r.days,
        promo_code=r.promo_code,
        discount_percent=r.discount_percent,
        created_at=r.created_at,
    )


class SqlOrders(_Repo):
    async def add(self, order: Order) -> None:
        try:
            await self._conn.execute(
                sa.insert(t.orders).values(
                    id=order.id,
                    customer_id=order.customer_id,
                    kind=order.kind.value,
                    amount_minor=order.amount.minor,
                    list_minor=order.list_price.minor,
                    currency=order.amount.currency.code,
                    plan_code=order.plan_code,
                    days=order.days,
                    promo_code=order.promo_code,
                    discount_percent=order.discount_percent,
                    created_at=order.created_at,
                )
            )
        except IntegrityError as e:
            raise ConflictError(f"order {order.id} exists") from e

    async def get(self, order_id: str) -> Order | None:
        row = await self._one(sa.select(t.orders).where(t.orders.c.id == order_id))
        return _order(row) if row else None

    async def delete_abandoned(self, cutoff: datetime, limit: int = 1000) -> int:
        o = t.orders.c
        unused = (
            sa.select(o.id)
            .where(
                o.created_at < cutoff,
                ~sa.exists().where(t.payments.c.order_id == o.id),
                ~sa.exists().where(t.holds.c.order_id == o.id),
                ~sa.exists().where(t.promo_redemptions.c.order_id == o.id),
            )
            .limit(limit)
        )
        if self._pg:  # a checkout adding its payment right now keeps its order
            unused = unused.with_for_update(skip_locked=True)
        result = await self._conn.execute(
            sa.delete(t.orders).where(o.id.in_(unused.scalar_subquery()))
        )
        return int(result.rowcount or 0)
