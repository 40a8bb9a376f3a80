"""Payments: a state machine per attempt to pay an order through one provider."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final

import attrs

from vpnshop.domain.money import Money


class PaymentStatus(enum.StrEnum):
    CREATED = "created"  # stored locally, not yet at the provider
    PENDING = "pending"  # created at the provider, waiting for the customer
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REFUNDED = "refunded"

    @property
    def is_final(self) -> bool:
        return self in (PaymentStatus.CANCELED, PaymentStatus.EXPIRED, PaymentStatus.REFUNDED)


TRANSITIONS: Final[dict[PaymentStatus, frozenset[PaymentStatus]]] = {
    PaymentStatus.CREATED: frozenset(
        {
            PaymentStatus.PENDING,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.CANCELED,
            PaymentStatus.EXPIRED,
        }
    ),
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED, PaymentStatus.EXPIRED}
    ),
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.CANCELED: frozenset(),
    PaymentStatus.EXPIRED: frozenset(),
    PaymentStatus.REFUNDED: frozenset(),
}

# A provider may confirm a payment before our "created -> pending" step was stored (the
# webhook can beat the response of the create call), so both count as open.
OPEN_STATUSES: Final = frozenset({PaymentStatus.CREATED, PaymentStatus.PENDING})


def can_transition(src: PaymentStatus, dst: PaymentStatus) -> bool:
    return dst in TRANSITIONS[src]


def sources_of(dst: PaymentStatus) -> frozenset[PaymentStatus]:
    """Every status from which *dst* may be reached (for conditional UPDATEs)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if dst in targets)


@attrs.frozen
class Payment:
    """One attempt to pay ``order_id`` with ``provider``.

    ``external_id`` is the provider's id for it (unique per provider); ``refunded`` is how
    much of it has been given back so far.
    """

    id: str
    order_id: str
    customer_id: int
    provider: str
    amount: Money
    status: PaymentStatus = PaymentStatus.CREATED
    external_id: str | None = None
    confirmation_url: str | None = None
    refunded: Money | None = None
    saved_method_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def refundable(self) -> Money:
        """What can still be refunded."""
        if self.status is not PaymentStatus.SUCCEEDED:
            return Money.zero(self.amount.currency)
        return self.amount - (self.refunded or Money.zero(self.amount.currency))
