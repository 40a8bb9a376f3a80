"""Orders: what is being bought, priced on the server."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from vpnshop.domain.errors import ValidationError
from vpnshop.domain.money import Money


class OrderKind(enum.StrEnum):
    PLAN = "plan"  # buy or extend a subscription
    TOPUP = "topup"  # credit the balance


@attrs.frozen
class Order:
    """A priced intent to buy. ``amount`` is what must be paid, after any discount.

    ``list_price`` and the promo fields are a snapshot: changing a plan's price or a promo
    later does not change an order that already exists.
    """

    id: str
    customer_id: int
    kind: OrderKind
    amount: Money
    list_price: Money
    plan_code: str | None = None
    days: int = 0
    promo_code: str | None = None
    discount_percent: int = 0
    created_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind is OrderKind.PLAN and (not self.plan_code or self.days <= 0):
            raise ValidationError("a plan order names a plan and a positive number of days")
        if self.kind is OrderKind.TOPUP and self.plan_code:
            raise ValidationError("a top-up order buys no plan")
        if not self.amount.is_positive:
            raise ValidationError("an order's amount must be positive")
        if self.amount.currency != self.list_price.currency:
            raise ValidationError("an order's amount and list price share a currency")
