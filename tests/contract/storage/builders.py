"""Builders of domain objects, and of committed rows, for the storage contract tests.

Rows are created in the order foreign keys need (customer, plan, order, payment...) and
every time is timezone-aware UTC.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer
from vpnshop.domain.ledger import EntryKind, LedgerEntry
from vpnshop.domain.money import RUB, XTR, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind, OutboxJob
from vpnshop.domain.payment import Payment
from vpnshop.domain.plan import GIB, Plan, TrafficReset
from vpnshop.ports.storage import UnitOfWork

Factory = Callable[[], UnitOfWork]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_telegram_ids = itertools.count(7_000_000_001)
_serial = itertools.count(1)


def unique_id(prefix: str) -> str:
    """A fresh id with *prefix*, unique in this test process."""
    return f"{prefix}{next(_serial):08d}"


def new_customer(**changes: Any) -> Customer:
    """An unsaved customer with a fresh Telegram id."""
    base = Customer(id=None, telegram_id=next(_telegram_ids), created_at=T0)
    return attrs.evolve(base, **changes)


def new_plan(code: str = "month", **changes: Any) -> Plan:
    """A plan with every field set, priced in RUB and XTR."""
    base = Plan(
        code=code,
        names={"ru": "Месяц", "en": "Month"},
        duration_days=30,
        prices={"RUB": Money.of("199.00", RUB), "XTR": Money(150, XTR)},
        traffic_limit_bytes=100 * GIB,
        traffic_reset=TrafficReset.MONTH,
        device_limit=3,
        squads=("sq-a", "sq-b"),
        active=True,
        sort_order=10,
    )
    return attrs.evolve(base, **changes)


def new_topup_order(customer_id: int, amount: Money | None = None) -> Order:
    """A top-up order (500 RUB unless *amount* is given)."""
    amount = amount or Money.of("500.00", RUB)
    return Order(
        id=unique_id("o"),
        customer_id=customer_id,
        kind=OrderKind.TOPUP,
        amount=amount,
        list_price=amount,
        created_at=T0,
    )


def new_payment(order: Order, **changes: Any) -> Payment:
    """A created payment of the whole *order* through yookassa."""
    base = Payment(
        id=unique_id("p"),
        order_id=order.id,
        customer_id=order.customer_id,
        provider="yookassa",
        amount=order.amount,
        created_at=T0,
        updated_at=T0,
    )
    return attrs.evolve(base, **changes)


def new_entry(customer_id: int, minor: int, key: str | None = None, **changes: Any) -> LedgerEntry:
    """A RUB ledger entry: a top-up when *minor* is positive, else a debit."""
    base = LedgerEntry(
        customer_id=customer_id,
        amount=Money(minor, RUB),
        kind=EntryKind.TOPUP if minor > 0 else EntryKind.DEBIT,
        idempotency_key=key or unique_id("k"),
        actor=Actor.system("test"),
        created_at=T0,
    )
    return attrs.evolve(base, **changes)


def new_job(
    key: str | None = None,
    due_at: datetime = T0,
    kind: str = JobKind.NOTIFY_CUSTOMER,
    **changes: Any,
) -> OutboxJob:
    """An outbox job (a customer notification unless *kind* says otherwise) due at *due_at*."""
    base = OutboxJob(
        kind=kind,
        payload={"chat_id": 42, "text": "hello"},
        dedupe_key=key or unique_id("d"),
        due_at=due_at,
        created_at=T0,
    )
    return attrs.evolve(base, **changes)


async def add_customer(uow_factory: Factory, **changes: Any) -> Customer:
    """A customer, committed."""
    async with uow_factory() as uow:
        customer = await uow.customers.add(new_customer(**changes))
        await uow.commit()
    return customer


async def add_payment(uow_factory: Factory, **changes: Any) -> Payment:
    """A customer, a top-up order and a payment for it, committed."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    order = new_topup_order(customer.id)
    payment = new_payment(order, **changes)
    async with uow_factory() as uow:
        await uow.orders.add(order)
        await uow.payments.add(payment)
        await uow.commit()
    return payment


async def credit(uow_factory: Factory, customer_id: int, minor: int) -> None:
    """A committed ledger entry of *minor* kopecks for the customer."""
    async with uow_factory() as uow:
        assert await uow.ledger.post(new_entry(customer_id, minor))
        await uow.commit()
