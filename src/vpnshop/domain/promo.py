"""Promo codes and their redemptions."""

from __future__ import annotations

import enum
import re
from datetime import datetime

import attrs

from vpnshop.domain.errors import (
    PromoExhaustedError,
    PromoExpiredError,
    PromoNotApplicableError,
    PromoUnknownError,
    ValidationError,
)
from vpnshop.domain.money import Money

_CODE = re.compile(r"^[A-Z0-9_-]{3,32}$")


class PromoKind(enum.StrEnum):
    BONUS_DAYS = "bonus_days"  # value = days added to the subscription
    BALANCE = "balance"  # value = minor units credited (in ``currency``)
    DISCOUNT = "discount"  # value = percent off one order
    TRIAL_DAYS = "trial_days"  # value = extra days on the free trial


def normalise_code(code: str) -> str:
    return code.strip().upper()


def is_valid_code(code: str) -> bool:
    """Whether *code* (normalised) could be a promo code at all: typed text that is not
    is refused without a lookup."""
    return _CODE.match(code) is not None


@attrs.frozen(hash=False)
class PromoCode:
    code: str = attrs.field(converter=normalise_code)
    kind: PromoKind
    value: int
    currency: str | None = None  # for BALANCE
    max_uses: int | None = None  # total, None = unlimited
    uses: int = 0
    once_per_customer: bool = True
    valid_until: datetime | None = None
    min_amount: Money | None = None  # for DISCOUNT
    plan_codes: frozenset[str] = frozenset()  # empty = every plan
    active: bool = True
    created_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise ValidationError(f"promo code {self.code!r} must be 3-32 of A-Z, 0-9, _ or -")
        if self.value <= 0:
            raise ValidationError("a promo code's value must be positive")
        if self.kind is PromoKind.DISCOUNT and self.value > 100:
            raise ValidationError("a discount is at most 100 percent")
        if self.kind is PromoKind.BALANCE and not self.currency:
            raise ValidationError("a balance promo names its currency")

    def check_usable(self, now: datetime) -> None:
        """Raise a PromoError subclass when the code cannot be used at all now: an
        inactive code reads as unknown, then expired, then exhausted."""
        if not self.active:
            raise PromoUnknownError(f"promo code {self.code} is switched off")
        if self.valid_until is not None and now >= self.valid_until:
            raise PromoExpiredError(f"promo code {self.code} expired at {self.valid_until}")
        if self.max_uses is not None and self.uses >= self.max_uses:
            raise PromoExhaustedError(f"promo code {self.code} has no uses left")

    def check_order(self, plan_code: str | None, amount: Money) -> None:
        """Raise PromoError when a discount does not apply to this purchase."""
        if self.kind is not PromoKind.DISCOUNT:
            raise PromoNotApplicableError("not_a_discount")
        if self.plan_codes and plan_code not in self.plan_codes:
            raise PromoNotApplicableError("wrong_plan")
        if (
            self.min_amount is not None
            and self.min_amount.currency == amount.currency
            and amount < self.min_amount
        ):
            raise PromoNotApplicableError("below_minimum")


@attrs.frozen
class PromoRedemption:
    code: str
    customer_id: int
    at: datetime
    order_id: str | None = None
