"""Pricing: an order's amount is computed here, from stored plans and promos, never taken
from a client; and what its promo code allows when the order is paid."""

from __future__ import annotations

from vpnshop.domain.errors import NotFoundError, PromoError, ValidationError
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.promo import normalise_code
from vpnshop.ports.storage import PaymentContext, UnitOfWork
from vpnshop.services.deps import Deps


async def price_plan_order(
    uow: UnitOfWork,
    deps: Deps,
    *,
    customer_id: int,
    plan_code: str,
    cur: Currency,
    promo_code: str | None = None,
) -> Order:
    """An order for *plan_code* paid in *cur*, with the promo's discount snapshotted."""
    plan = await uow.plans.get(plan_code)
    if plan is None or not plan.active:
        raise NotFoundError(f"plan {plan_code} is not on sale")
    list_price = plan.price(cur)
    if list_price is None:
        raise ValidationError(f"plan {plan_code} has no price in {cur.code}")
    amount, discount, code = list_price, 0, None
    if promo_code:
        promo = await uow.promos.get(normalise_code(promo_code))
        if promo is None:
            raise PromoError("unknown")
        promo.check_usable(deps.now())
        promo.check_order(plan.code, list_price)
        if promo.once_per_customer and await uow.promos.redeemed(promo.code, customer_id):
            raise PromoError("already_used")
        discount, code = promo.value, promo.code
        amount = list_price.discounted(discount)
        if not amount.is_positive:
            raise PromoError("free", "a 100% discount is given as bonus days, not an order")
    elif promo_code == "":
        raise PromoError("unknown")
    return Order(
        id=deps.ids.new_id(),
        customer_id=customer_id,
        kind=OrderKind.PLAN,
        amount=amount,
        list_price=list_price,
        plan_code=plan.code,
        days=plan.duration_days,
        promo_code=code,
        discount_percent=discount,
        created_at=deps.now(),
    )


def topup_order(deps: Deps, *, customer_id: int, amount: Money) -> Order:
    if not amount.is_positive:
        raise ValidationError("a top-up is a positive amount")
    return Order(
        id=deps.ids.new_id(),
        customer_id=customer_id,
        kind=OrderKind.TOPUP,
        amount=amount,
        list_price=amount,
        created_at=deps.now(),
    )


async def promo_once(uow: UnitOfWork, ctx: PaymentContext) -> bool:
    """Whether the order's promo code (if any) may be redeemed once per customer only."""
    if not ctx.order.promo_code:
        return True
    promo = await uow.promos.get(ctx.order.promo_code)
    return promo.once_per_customer if promo is not None else True
