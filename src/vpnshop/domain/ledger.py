"""The ledger: every change of a balance is one append-only entry."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import ValidationError
from vpnshop.domain.money import Money


class EntryKind(enum.StrEnum):
    TOPUP = "topup"  # paid in through a provider
    HOLD = "hold"  # reserved for a purchase from balance (a debit)
    RELEASE = "release"  # a hold given back because fulfilment failed (a credit)
    REFERRAL_REWARD = "referral_reward"
    PROMO_CREDIT = "promo_credit"
    ADMIN_ADJUSTMENT = "admin_adjustment"
    REFUND = "refund"  # a refund to balance, or a debit when a top-up is refunded
    DEBIT = "debit"  # a plain debit (a purchase not going through a hold)


@attrs.frozen
class LedgerEntry:
    """A signed change of one customer's balance in one currency.

    ``idempotency_key`` is unique across the ledger: posting the same key twice changes the
    balance once. ``reference`` names what caused it (a payment, a hold, an order).
    """

    customer_id: int
    amount: Money
    kind: EntryKind
    idempotency_key: str
    actor: Actor
    reference: str | None = None
    memo: str | None = None
    id: int | None = None
    created_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        if self.amount.is_zero:
            raise ValidationError("a ledger entry moves a non-zero amount")
        if not self.idempotency_key or len(self.idempotency_key) > 200:
            raise ValidationError("a ledger entry needs an idempotency key of 1-200 characters")


class HoldStatus(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"


@attrs.frozen
class Hold:
    """Funds taken from a balance for an order until fulfilment captures or releases them."""

    id: str
    customer_id: int
    amount: Money
    order_id: str
    status: HoldStatus = HoldStatus.HELD
    created_at: datetime | None = None
