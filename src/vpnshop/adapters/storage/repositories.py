"""Repositories over SQLAlchemy Core (not the ORM: a payment is confirmed in a handful of
statements, and the ORM's load-modify-flush is what limits throughput on these machines).

Every method documented as atomic in ``vpnshop.ports.storage`` is one conditional
statement here (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, ``UPDATE ... WHERE
<precondition> RETURNING``), correct on SQLite and PostgreSQL with any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from vpnshop.adapters.storage import tables as t
from vpnshop.domain.actor import Actor
from vpnshop.domain.audit import AuditEntry
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ConflictError, InsufficientFundsError
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobStatus, OutboxJob
from vpnshop.domain.payment import Payment, PaymentStatus, sources_of
from vpnshop.domain.plan import Plan, TrafficReset
from vpnshop.domain.promo import PromoCode, PromoKind, PromoRedemption, normalise_code
from vpnshop.domain.referral import Referral
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage import BalanceMismatch, PaymentContext

Row = Any


class _Prefixed:
    """Attribute access to the columns of a joined row that carry a label prefix."""

    def __init__(self, mapping: Mapping[Any, Any], prefix: str) -> None:
        self._m = mapping
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        return self._m[self._prefix + name]


class _Repo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    def _insert(self, table: sa.Table) -> Any:
        """A dialect insert, so ``on_conflict_do_nothing`` is available on both engines."""
        return (postgresql.insert if self._pg else sqlite.insert)(table)

    async def _one(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Row | None:
        return (await self._conn.execute(stmt, params)).first()

    async def _all(self, stmt: Any) -> Sequence[Row]:
        return (await self._conn.execute(stmt)).all()


# -- customers ------------------------------------------------------------------------


def _customer(r: Row) -> Customer:
    return Customer(
        id=r.id,
        telegram_id=r.telegram_id,
        language=r.language,
        username=r.username,
        referrer_id=r.referrer_id,
        campaign=r.campaign,
        banned=r.banned,
        deleted_at=r.deleted_at,
        created_at=r.created_at,
    )


def _customer_values(c: Customer) -> dict[str, Any]:
    return {
        "telegram_id": c.telegram_id,
        "language": c.language,
        "username": c.username,
        "referrer_id": c.referrer_id,
        "campaign": c.campaign,
        "banned": c.banned,
        "deleted_at": c.deleted_at,
        "created_at": c.created_at,
    }


class SqlCustomers(_Repo):
    async def add(self, customer: Customer) -> Customer:
        stmt = (
            self._insert(t.customers)
            .values(**_customer_values(customer))
            .on_conflict_do_nothing(index_elements=["telegram_id"])
            .returning(t.customers.c.id)
        )
        row = await self._one(stmt)
        if row is None:
            raise ConflictError(f"customer with Telegram id {customer.telegram_id} exists")
        return Customer(**{**_customer_values(customer), "id": row.id})

    async def get_or_add(self, customer: Customer) -> tuple[Customer, bool]:
        # Two statements on purpose: in READ COMMITTED the INSERT waits for a concurrent
        # insert of the same Telegram id to commit, and only a new statement (a new
        # snapshot) sees that row. One statement with a CTE would see nothing.
        try:
            return await self.add(customer), True
        except ConflictError:
            existing = await self.by_telegram_id(customer.telegram_id)
            if existing is None:  # stored and deleted again in between: no customer to give
                raise
            return existing, False

    async def get(self, customer_id: int) -> Customer | None:
        row = await self._one(sa.select(t.customers).where(t.customers.c.id == customer_id))
        return _customer(row) if row else None

    async def by_telegram_id(self, telegram_id: int) -> Customer | None:
        row = await self._one(
            sa.select(t.customers).where(t.customers.c.telegram_id == telegram_id)
        )
        return _customer(row) if row else None

    async def lock(self, customer_id: int) -> None:
        if self._pg:
            await self._conn.execute(
                sa.select(t.customers.c.id)
                .where(t.customers.c.id == customer_id)
                # NO KEY UPDATE: it must not conflict with the KEY SHARE locks that inserts
                # of rows referencing the customer take (that would deadlock).
                .with_for_update(key_share=True)
            )

    async def update(self, customer: Customer) -> None:
        values = _customer_values(customer)
        del values["created_at"]
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(
                    sa.update(t.customers).where(t.customers.c.id == customer.id).values(**values)
                )
        except IntegrityError as e:
            raise ConflictError(
                f"Telegram id {customer.telegram_id} belongs to another customer"
            ) from e

    async def count(self) -> int:
        return int(
            (
                await self._conn.execute(sa.select(sa.func.count()).select_from(t.customers))
            ).scalar_one()
        )


# -- plans ----------------------------------------------------------------------------


def _plan(r: Row) -> Plan:
    return Plan(
        code=r.code,
        names=dict(r.names),
        duration_days=r.duration_days,
        prices={c: Money(int(v), currency_of(c)) for c, v in r.prices.items()},
        traffic_limit_bytes=r.traffic_limit_bytes,
        traffic_reset=TrafficReset(r.traffic_reset),
        device_limit=r.device_limit,
        squads=tuple(r.squads),
        active=r.active,
        sort_order=r.sort_order,
    )


def _plan_values(p: Plan) -> dict[str, Any]:
    return {
        "code": p.code,
        "names": dict(p.names),
        "duration_days": p.duration_days,
        "prices": {c: m.minor for c, m in sorted(p.prices.items())},
        "traffic_limit_bytes": p.traffic_limit_bytes,
        "traffic_reset": p.traffic_reset.value,
        "device_limit": p.device_limit,
        "squads": list(p.squads),
        "active": p.active,
        "sort_order": p.sort_order,
    }


class SqlPlans(_Repo):
    async def get(self, code: str) -> Plan | None:
        row = await self._one(sa.select(t.plans).where(t.plans.c.code == code))
        return _plan(row) if row else None

    async def list(self, *, active_only: bool = True) -> list[Plan]:
        stmt = sa.select(t.plans).order_by(t.plans.c.sort_order, t.plans.c.code)
        if active_only:
            stmt = stmt.where(t.plans.c.active.is_(True))
        return [_plan(r) for r in await self._all(stmt)]

    async def upsert(self, plan: Plan) -> bool:
        current = await self.get(plan.code)
        if current == plan:
            return False
        values = _plan_values(plan)
        if current is None:
            # Two loads of a new plan at once (two replicas starting) must not fail: the
            # second insert does nothing, and updates the row the first one made.
            insert = self._insert(t.plans).values(**values).on_conflict_do_nothing()
            if (await self._conn.execute(insert)).rowcount == 1:
                return True
        await self._conn.execute(
            sa.update(t.plans).where(t.plans.c.code == plan.code).values(**values)
        )
        return True


# -- subscriptions --------------------------------------------------------------------


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
        stmt = sa.select(t.subscriptions).where(t.subscriptions.c.id == subscription_id)
        if for_update and self._pg:
            stmt = stmt.with_for_update()
        row = await self._one(stmt)
        return _subscription(row) if row else None

    async def for_customer(self, customer_id: int) -> list[Subscription]:
        stmt = (
            sa.select(t.subscriptions)
            .where(t.subscriptions.c.customer_id == customer_id)
            .order_by(t.subscriptions.c.id.desc())
        )
        return [_subscription(r) for r in await self._all(stmt)]

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

    async def expiring_between(self, start: datetime, end: datetime) -> list[Subscription]:
        stmt = (
            sa.select(t.subscriptions)
            .where(t.subscriptions.c.expires_at >= start, t.subscriptions.c.expires_at < end)
            .order_by(t.subscriptions.c.expires_at)
        )
        return [_subscription(r) for r in await self._all(stmt)]


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


# -- orders and payments --------------------------------------------------------------


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

    async def get(self, order_id: str) -> Order | None:
        row = await self._one(sa.select(t.orders).where(t.orders.c.id == order_id))
        return _order(row) if row else None


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


# -- ledger and holds -----------------------------------------------------------------


def _entry(r: Row) -> LedgerEntry:
    return LedgerEntry(
        id=r.id,
        customer_id=r.customer_id,
        amount=Money(r.amount_minor, currency_of(r.currency)),
        kind=EntryKind(r.kind),
        idempotency_key=r.idempotency_key,
        actor=Actor.parse(r.actor),
        reference=r.reference,
        memo=r.memo,
        created_at=r.created_at,
    )


class SqlLedger(_Repo):
    async def post(self, entry: LedgerEntry) -> bool:
        inserted = await self._one(
            self._insert(t.ledger)
            .values(
                customer_id=entry.customer_id,
                amount_minor=entry.amount.minor,
                currency=entry.amount.currency.code,
                kind=entry.kind.value,
                idempotency_key=entry.idempotency_key,
                actor=str(entry.actor),
                reference=entry.reference,
                memo=entry.memo,
                created_at=entry.created_at,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(t.ledger.c.id)
        )
        if inserted is None:
            return False
        b = t.balances.c
        delta = entry.amount.minor
        if delta > 0:
            stmt = self._insert(t.balances).values(
                customer_id=entry.customer_id,
                currency=entry.amount.currency.code,
                amount_minor=delta,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["customer_id", "currency"],
                set_={"amount_minor": b.amount_minor + stmt.excluded.amount_minor},
            )
            await self._conn.execute(stmt)
            return True
        # A debit is one conditional UPDATE: concurrent debits serialise on the row and
        # each re-checks the condition, so the balance can never go below zero.
        row = await self._one(
            sa.update(t.balances)
            .where(
                b.customer_id == entry.customer_id,
                b.currency == entry.amount.currency.code,
                b.amount_minor + delta >= 0,
            )
            .values(amount_minor=b.amount_minor + delta)
            .returning(b.amount_minor)
        )
        if row is None:
            raise InsufficientFundsError(
                f"customer {entry.customer_id}: balance too low for {-entry.amount}"
            )
        return True

    async def balance(self, customer_id: int, currency: Currency) -> Money:
        row = await self._one(
            sa.select(t.balances.c.amount_minor).where(
                t.balances.c.customer_id == customer_id, t.balances.c.currency == currency.code
            )
        )
        return Money(int(row.amount_minor) if row else 0, currency)

    async def entries(self, customer_id: int, limit: int = 50) -> list[LedgerEntry]:
        stmt = (
            sa.select(t.ledger)
            .where(t.ledger.c.customer_id == customer_id)
            .order_by(t.ledger.c.id.desc())
            .limit(limit)
        )
        return [_entry(r) for r in await self._all(stmt)]

    async def has_key(self, idempotency_key: str) -> bool:
        stmt = sa.select(t.ledger.c.id).where(t.ledger.c.idempotency_key == idempotency_key)
        return await self._one(stmt) is not None

    async def mismatches(self) -> list[BalanceMismatch]:
        sums = (
            sa.select(
                t.ledger.c.customer_id,
                t.ledger.c.currency,
                sa.func.sum(t.ledger.c.amount_minor).label("total"),
            )
            .group_by(t.ledger.c.customer_id, t.ledger.c.currency)
            .subquery()
        )
        b = t.balances.c
        # A full outer join in two halves (SQLite before 3.39 has none).
        left = sa.select(
            b.customer_id,
            b.currency,
            b.amount_minor.label("stored"),
            sa.func.coalesce(sums.c.total, 0).label("summed"),
        ).select_from(
            t.balances.outerjoin(
                sums, sa.and_(sums.c.customer_id == b.customer_id, sums.c.currency == b.currency)
            )
        )
        right = (
            sa.select(
                sums.c.customer_id,
                sums.c.currency,
                sa.literal(0).label("stored"),
                sums.c.total.label("summed"),
            )
            .select_from(
                sums.outerjoin(
                    t.balances,
                    sa.and_(sums.c.customer_id == b.customer_id, sums.c.currency == b.currency),
                )
            )
            .where(b.customer_id.is_(None))
        )
        rows = await self._all(sa.union_all(left, right))
        return [
            BalanceMismatch(r.customer_id, r.currency, int(r.stored), int(r.summed))
            for r in rows
            if int(r.stored) != int(r.summed)
        ]


def _hold(r: Row) -> Hold:
    return Hold(
        id=r.id,
        customer_id=r.customer_id,
        amount=Money(r.amount_minor, currency_of(r.currency)),
        order_id=r.order_id,
        status=HoldStatus(r.status),
        created_at=r.created_at,
    )


class SqlHolds(_Repo):
    async def add(self, hold: Hold) -> None:
        await self._conn.execute(
            sa.insert(t.holds).values(
                id=hold.id,
                customer_id=hold.customer_id,
                amount_minor=hold.amount.minor,
                currency=hold.amount.currency.code,
                order_id=hold.order_id,
                status=hold.status.value,
                created_at=hold.created_at,
            )
        )

    async def get(self, hold_id: str) -> Hold | None:
        row = await self._one(sa.select(t.holds).where(t.holds.c.id == hold_id))
        return _hold(row) if row else None

    async def settle(self, hold_id: str, to: HoldStatus) -> Hold | None:
        if to is HoldStatus.HELD:
            return None
        row = await self._one(
            sa.update(t.holds)
            .where(t.holds.c.id == hold_id, t.holds.c.status == HoldStatus.HELD.value)
            .values(status=to.value)
            .returning(t.holds)
        )
        return _hold(row) if row else None


# -- promos, referrals, audit ---------------------------------------------------------


def _promo(r: Row) -> PromoCode:
    return PromoCode(
        code=r.code,
        kind=PromoKind(r.kind),
        value=r.value,
        currency=r.currency,
        max_uses=r.max_uses,
        uses=r.uses,
        once_per_customer=r.once_per_customer,
        valid_until=r.valid_until,
        min_amount=(
            Money(r.min_amount_minor, currency_of(r.min_amount_currency))
            if r.min_amount_minor is not None
            else None
        ),
        plan_codes=frozenset(r.plan_codes),
        active=r.active,
        created_at=r.created_at,
    )


def _promo_values(p: PromoCode) -> dict[str, Any]:
    return {
        "code": p.code,
        "kind": p.kind.value,
        "value": p.value,
        "currency": p.currency,
        "max_uses": p.max_uses,
        "uses": p.uses,
        "once_per_customer": p.once_per_customer,
        "valid_until": p.valid_until,
        "min_amount_minor": p.min_amount.minor if p.min_amount else None,
        "min_amount_currency": p.min_amount.currency.code if p.min_amount else None,
        "plan_codes": sorted(p.plan_codes),
        "active": p.active,
        "created_at": p.created_at,
    }


class SqlPromos(_Repo):
    async def add(self, promo: PromoCode) -> None:
        row = await self._one(
            self._insert(t.promo_codes)
            .values(**_promo_values(promo))
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(t.promo_codes.c.code)
        )
        if row is None:
            raise ConflictError(f"promo code {promo.code} exists")

    async def get(self, code: str) -> PromoCode | None:
        row = await self._one(
            sa.select(t.promo_codes).where(t.promo_codes.c.code == normalise_code(code))
        )
        return _promo(row) if row else None

    async def redeemed(self, code: str, customer_id: int) -> bool:
        r = t.promo_redemptions.c
        stmt = sa.select(r.id).where(r.code == normalise_code(code), r.customer_id == customer_id)
        return await self._one(stmt.limit(1)) is not None

    async def list(self, *, active_only: bool = False) -> list[PromoCode]:
        stmt = sa.select(t.promo_codes).order_by(t.promo_codes.c.code)
        if active_only:
            stmt = stmt.where(t.promo_codes.c.active.is_(True))
        return [_promo(r) for r in await self._all(stmt)]

    async def update(self, promo: PromoCode) -> None:
        values = _promo_values(promo)
        for key in ("code", "uses", "created_at"):  # uses only moves through redeem()
            del values[key]
        await self._conn.execute(
            sa.update(t.promo_codes).where(t.promo_codes.c.code == promo.code).values(**values)
        )

    async def redeem(
        self, redemption: PromoRedemption, *, once_per_customer: bool, max_uses: int | None
    ) -> bool:
        code = normalise_code(redemption.code)
        counted = await self._one(
            sa.update(t.promo_codes)
            .where(
                t.promo_codes.c.code == code,
                sa.or_(
                    t.promo_codes.c.max_uses.is_(None),
                    t.promo_codes.c.uses < t.promo_codes.c.max_uses,
                ),
            )
            .values(uses=t.promo_codes.c.uses + 1)
            .returning(t.promo_codes.c.code)
        )
        if counted is None:
            return False
        inserted = await self._one(
            self._insert(t.promo_redemptions)
            .values(
                code=code,
                customer_id=redemption.customer_id,
                once_key=code if once_per_customer else None,
                order_id=redemption.order_id,
                at=redemption.at,
            )
            .on_conflict_do_nothing(index_elements=["code", "customer_id", "once_key"])
            .returning(t.promo_redemptions.c.id)
        )
        if inserted is None:
            # Already redeemed: give the use back (same transaction, so nobody saw it).
            await self._conn.execute(
                sa.update(t.promo_codes)
                .where(t.promo_codes.c.code == code)
                .values(uses=t.promo_codes.c.uses - 1)
            )
            return False
        return True


class SqlReferrals(_Repo):
    async def claim_bonus(self, referee_id: int, now: datetime) -> int | None:
        r = t.referrals.c
        row = await self._one(
            sa.update(t.referrals)
            .where(r.referee_id == referee_id, r.bonus_granted_at.is_(None))
            .values(bonus_granted_at=now)
            .returning(r.referrer_id)
        )
        return None if row is None else int(row.referrer_id)

    async def add(self, referral: Referral) -> bool:
        row = await self._one(
            self._insert(t.referrals)
            .values(
                referee_id=referral.referee_id,
                referrer_id=referral.referrer_id,
                created_at=referral.created_at,
            )
            .on_conflict_do_nothing(index_elements=["referee_id"])
            .returning(t.referrals.c.referee_id)
        )
        return row is not None

    async def referrer_of(self, customer_id: int) -> int | None:
        row = await self._one(
            sa.select(t.referrals.c.referrer_id).where(t.referrals.c.referee_id == customer_id)
        )
        return int(row.referrer_id) if row else None

    async def referees_of(self, customer_id: int) -> list[int]:
        rows = await self._all(
            sa.select(t.referrals.c.referee_id)
            .where(t.referrals.c.referrer_id == customer_id)
            .order_by(t.referrals.c.created_at)
        )
        return [int(r.referee_id) for r in rows]


class SqlAudit(_Repo):
    async def add(self, entry: AuditEntry) -> None:
        await self._conn.execute(
            sa.insert(t.audit_log).values(
                actor=str(entry.actor),
                action=entry.action,
                subject=entry.subject,
                details=dict(entry.details),
                at=entry.at,
            )
        )

    async def recent(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]:
        stmt = sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        if subject is not None:
            stmt = stmt.where(t.audit_log.c.subject == subject)
        return [
            AuditEntry(
                actor=Actor.parse(r.actor),
                action=r.action,
                subject=r.subject,
                at=r.at,
                details=dict(r.details),
                id=r.id,
            )
            for r in await self._all(stmt)
        ]


# -- outbox ---------------------------------------------------------------------------


def _job(r: Row) -> OutboxJob:
    return OutboxJob(
        id=r.id,
        kind=r.kind,
        payload=dict(r.payload),
        dedupe_key=r.dedupe_key,
        due_at=r.due_at,
        status=JobStatus(r.status),
        attempts=r.attempts,
        last_error=r.last_error,
        created_at=r.created_at,
        locked_until=r.locked_until,
    )


class SqlOutbox(_Repo):
    async def add(self, job: OutboxJob) -> bool:
        row = await self._one(
            self._insert(t.outbox)
            .values(
                kind=job.kind,
                payload=dict(job.payload),
                dedupe_key=job.dedupe_key,
                status=job.status.value,
                attempts=job.attempts,
                due_at=job.due_at,
                last_error=job.last_error,
                created_at=job.created_at or job.due_at,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(t.outbox.c.id)
        )
        return row is not None

    async def claim(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int = 10,
        kinds: Sequence[str] | None = None,
    ) -> list[OutboxJob]:
        o = t.outbox.c
        due = (
            sa.select(o.id)
            .where(
                o.status == JobStatus.PENDING.value,
                o.due_at <= now,
                sa.or_(o.locked_until.is_(None), o.locked_until <= now),
            )
            .order_by(o.due_at, o.id)
            .limit(limit)
        )
        if kinds:
            due = due.where(o.kind.in_(list(kinds)))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            sa.update(t.outbox)
            .where(o.id.in_(due.scalar_subquery()))
            .values(locked_until=lease_until, attempts=o.attempts + 1)
            .returning(t.outbox)
        )
        rows = await self._all(stmt)
        return sorted((_job(r) for r in rows), key=lambda j: (j.due_at, j.id or 0))

    async def complete(self, job_id: int) -> None:
        await self._set(job_id, status=JobStatus.DONE.value, locked_until=None)

    async def retry(self, job_id: int, due_at: datetime, error: str) -> None:
        await self._set(job_id, due_at=due_at, last_error=error[:2000], locked_until=None)

    async def park(self, job_id: int, error: str) -> None:
        await self._set(
            job_id, status=JobStatus.PARKED.value, last_error=error[:2000], locked_until=None
        )

    async def _set(self, job_id: int, **values: Any) -> None:
        await self._conn.execute(
            sa.update(t.outbox).where(t.outbox.c.id == job_id).values(**values)
        )

    async def get(self, job_id: int) -> OutboxJob | None:
        row = await self._one(sa.select(t.outbox).where(t.outbox.c.id == job_id))
        return _job(row) if row else None

    async def pending_count(self) -> int:
        stmt = sa.select(sa.func.count()).where(t.outbox.c.status == JobStatus.PENDING.value)
        return int((await self._conn.execute(stmt)).scalar_one())

    async def parked(self, limit: int = 50) -> list[OutboxJob]:
        stmt = (
            sa.select(t.outbox)
            .where(t.outbox.c.status == JobStatus.PARKED.value)
            .order_by(t.outbox.c.id.desc())
            .limit(limit)
        )
        return [_job(r) for r in await self._all(stmt)]


REPOSITORIES: Mapping[str, Callable[[AsyncConnection], _Repo]] = {
    "customers": SqlCustomers,
    "plans": SqlPlans,
    "subscriptions": SqlSubscriptions,
    "trials": SqlTrials,
    "orders": SqlOrders,
    "payments": SqlPayments,
    "ledger": SqlLedger,
    "holds": SqlHolds,
    "promos": SqlPromos,
    "referrals": SqlReferrals,
    "audit": SqlAudit,
    "outbox": SqlOutbox,
}
