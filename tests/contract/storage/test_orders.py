"""The orders repository."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
    new_plan,
    new_topup_order,
    unique_id,
)
from vpnshop.domain.money import RUB, XTR, Money
from vpnshop.domain.order import Order, OrderKind


async def test_orders_round_trip_every_field(uow_factory: Factory) -> None:
    """Plan and top-up orders come back exactly as stored; unknown ids give None."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    plan_order = Order(
        id=unique_id("o"),
        customer_id=customer.id,
        kind=OrderKind.PLAN,
        amount=Money.of("179.10", RUB),
        list_price=Money.of("199.00", RUB),
        plan_code="month",
        days=30,
        promo_code="SPRING10",
        discount_percent=10,
        created_at=T0 + timedelta(microseconds=7),
    )
    topup = new_topup_order(customer.id, Money(250, XTR))
    async with uow_factory() as uow:
        await uow.plans.upsert(new_plan())
        await uow.orders.add(plan_order)
        await uow.orders.add(topup)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.orders.get(plan_order.id) == plan_order
        assert await uow.orders.get(topup.id) == topup
        assert await uow.orders.get("nope") is None
