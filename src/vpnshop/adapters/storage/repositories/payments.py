"""Payments, and a payment read with its order, plan and referrer in one query
(the context a confirmation needs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Prefixed, _Repo
from vpnshop.adapters.storage.repositories.orders import _order
from vpnshop.adapters.storage.repositories.plans import _plan
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.domain.payment import Payment, PaymentStatus, sources_of
from vpnshop.ports.storage import PaymentContext


def _payment(r: Row) -> Payment:
    cur = currency_of(r.currency)
    return Payment(
        id=r.id,
        order_id=r.order_id,
        customer_id=r.customer_id,
        provider=r.provider,
        amount=Money(r.amount_minor, cur),
        status=PaymentStatus(r.status),
        external_id=r.external_id,
        confirmation_url=r.confirmation_url,
        refunded=Money(r.refunded_minor, cur) if r.refunded_minor else None,
        saved_method_id=r.saved_method_id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _context_select() -> sa.Select[Any]:
    """A payment with its order, plan and referrer, in one read.
    Built once: constructing a 40-column select costs more than running it."""
    p, o, pl, r = t.payments.c, t.orders.c, t.plans.c, t.referrals.c
    return sa.select(
        t.payments,
        *(c.label(f"o_{c.name}") for c in t.orders.c),
        *(c.label(f"pl_{c.name}") for c in t.plans.c),
        r.referrer_id.label("referrer_id"),
    ).select_from(
        t.payments.join(t.orders, o.id == p.order_id)
        .outerjoin(t.plans, pl.code == o.plan_code)
        .outerjoin(t.referrals, r.referee_id == p.customer_id)
    )


_CONTEXT_BY_ID = _context_select().where(t.payments.c.id == sa.bindparam("payment_id"))
_CONTEXT_BY_EXTERNAL_ID = _context_select().where(
    t.payments.c.provider == sa.bindparam("provider"),
    t.payments.c.external_id == sa.bindparam("external_id"),
)


async def read_context(
    conn: AsyncConnection, payment_id: str | None, provider: str, external_id: str | None
) -> PaymentContext | None:
    """The payment by our id, else by (provider, external id), with its context.
    Two plain lookups rather than one OR: each is a single index probe."""
    row = None
    if payment_id is not None:
        row = (await conn.execute(_CONTEXT_BY_ID, {"payment_id": payment_id})).first()
    if row is None and external_id is not None:
        params = {"provider": provider, "external_id": external_id}
        row = (await conn.execute(_CONTEXT_BY_EXTERNAL_ID, params)).first()
    return None if row is None else context_from(row)


def context_from(row: Row) -> PaymentContext:
    m = row._mapping
    return PaymentContext(
        payment=_payment(row),
        order=_order(_Prefixed(m, "o_")),
        plan=_plan(_Prefixed(m, "pl_")) if m["pl_code"] is not None else None,
        referrer_id=m["referrer_id"],
    )


class SqlPayments(_Repo):
    async def add(self, payment: Payment) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(
                    sa.insert(t.payments).values(
                        id=payment.id,
                        order_id=payment.order_id,
                        customer_id=payment.customer_id,
                        provider=payment.provider,
                        external_id=payment.external_id,
                        amount_minor=payment.amount.minor,
                        currency=payment.amount.currency.code,
                        status=payment.status.value,
                        confirmation_url=payment.confirmation_url,
                        refunded_minor=payment.refunded.minor if payment.refunded else 0,
                        saved_method_id=payment.saved_method_id,
                        created_at=payment.created_at,
                        updated_at=payment.updated_at or payment.created_at,
                    )
                )
        except IntegrityError as e:
            raise ConflictError(f"payment {payment.id} conflicts with a stored one") from e

    async def get(self, payment_id: str) -> Payment | None:
        row = await self._one(sa.select(t.payments).where(t.payments.c.id == payment_id))
        return _payment(row) if row else None

    async def context(
        self, payment_id: str | None, provider: str, external_id: str | None
    ) -> PaymentContext | None:
        return await read_context(self._conn, payment_id, provider, external_id)

    async def by_external_id(self, provider: str, external_id: str) -> Payment | None:
        row = await self._one(
            sa.select(t.payments).where(
                t.payments.c.provider == provider, t.payments.c.external_id == external_id
            )
        )
        return _payment(row) if row else None

    async def transition(
        self,
        payment_id: str,
        to: PaymentStatus,
        now: datetime,
        *,
        external_id: str | None = None,
        confirmation_url: str | None = None,
        saved_method_id: str | None = None,
    ) -> Payment | None:
        values: dict[str, Any] = {"status": to.value, "updated_at": now}
        if external_id is not None:
            values["external_id"] = external_id
        if confirmation_url is not None:
            values["confirmation_url"] = confirmation_url
        if saved_method_id is not None:
            values["saved_method_id"] = saved_method_id
        sources = [s.value for s in sources_of(to)]
        if not sources:
            return None
        stmt = (
            sa.update(t.payments)
            .where(t.payments.c.id == payment_id, t.payments.c.status.in_(sources))
            .values(**values)
            .returning(t.payments)
        )
        try:
            async with self._conn.begin_nested():
                row = await self._one(stmt)
        except IntegrityError as e:
            raise ConflictError(f"external id {external_id} is used by another payment") from e
        return _payment(row) if row else None

    async def add_refund(self, payment_id: str, amount: Money, now: datetime) -> Payment | None:
        p = t.payments.c
        new_total = p.refunded_minor + amount.minor
        stmt = (
            sa.update(t.payments)
            .where(
                p.id == payment_id,
                p.status == PaymentStatus.SUCCEEDED.value,
                p.currency == amount.currency.code,
                new_total <= p.amount_minor,
                sa.literal(amount.minor) > 0,
            )
            .values(
                refunded_minor=new_total,
                status=sa.case(
                    (new_total == p.amount_minor, PaymentStatus.REFUNDED.value),
                    else_=p.status,
                ),
                updated_at=now,
            )
            .returning(t.payments)
        )
        row = await self._one(stmt)
        return _payment(row) if row else None

    async def open_older_than(self, cutoff: datetime, limit: int = 100) -> list[Payment]:
        p = t.payments.c
        stmt = (
            sa.select(t.payments)
            .where(
                p.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PENDING.value]),
                p.created_at < cutoff,
            )
            .order_by(p.created_at)
            .limit(limit)
        )
        return [_payment(r) for r in await self._all(stmt)]

    async def recent(self, limit: int = 20, customer_id: int | None = None) -> list[Payment]:
        stmt = sa.select(t.payments).order_by(t.payments.c.created_at.desc()).limit(limit)
        if customer_id is not None:
            stmt = stmt.where(t.payments.c.customer_id == customer_id)
        return [_payment(r) for r in await self._all(stmt)]
