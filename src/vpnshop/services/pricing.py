"""Pricing: an order's amount is computed here, from stored plans and promos, never taken
from a client; and what its promo code allows when the order is paid."""

from __future__ import annotations

from datetime import datetime

from vpnshop.domain.errors import (
    NotFoundError,
    PromoError,
    PromoUnknownError,
    PromoUsedError,
    ValidationError,
)
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.promo import PromoCode, is_valid_code, normalise_code
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
    promo: PromoCode | None
    if promo_code:
        promo = await usable_promo(uow, promo_code, customer_id, deps.now())
        promo.check_order(plan.code, list_price)
    elif promo_code == "":
        raise PromoUnknownError("an empty promo code")
    else:
        promo = await kept_discount(uow, customer_id, plan.code, list_price, deps.now())
    if promo is not None:
        discount, code = promo.value, promo.code
        amount = list_price.discounted(discount)
        if not amount.is_positive:
            raise PromoError("free", "a 100% discount is given as bonus days, not an order")
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


async def usable_promo(
    uow: UnitOfWork, promo_code: str, customer_id: int, now: datetime
) -> PromoCode:
    """The promo code, if this customer may use it now; else the PromoError subclass
    saying why (unknown, expired, exhausted, already used by this customer)."""
    code = normalise_code(promo_code)
    promo = await uow.promos.get(code) if is_valid_code(code) else None
    if promo is None:
        raise PromoUnknownError(f"no promo code {code[:40]!r}")
    promo.check_usable(now)
    if promo.once_per_customer and await uow.promos.redeemed(promo.code, customer_id):
        raise PromoUsedError(f"customer {customer_id} has used {promo.code}")
    return promo


async def kept_discount(
    uow: UnitOfWork, customer_id: int, plan_code: str, list_price: Money, now: datetime
) -> PromoCode | None:
    """The discount the customer typed in earlier (``RedeemPromo``), when it still applies
    to this purchase. A kept code that no longer does (expired, used up, paid with once,
    another plan) is passed over silently: it must never stop a purchase."""
    customer = await uow.customers.get(customer_id)
    if customer is None or customer.discount_code is None:
        return None
    try:
        promo = await usable_promo(uow, customer.discount_code, customer_id, now)
        promo.check_order(plan_code, list_price)
    except PromoError:
        return None
    return promo if promo.value < 100 else None  # a free order is no order


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
