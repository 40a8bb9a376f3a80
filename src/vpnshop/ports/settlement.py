"""An optional fast path of the storage port for confirming payments.

A store that can read a payment's context in one statement and settle it (the payment's
transition and all its effects) in one atomic statement, each outside any explicit
transaction, lets ConfirmPayment take two round trips instead of a transaction's worth.
The result must equal ``vpnshop.services.settlement.settle_stepwise`` in a unit of work;
the service and concurrency tests run through it on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.ports.storage import Effects, PaymentContext


class PaymentSettler(Protocol):
    async def context(
        self, payment_id: str | None, provider: str, external_id: str | None
    ) -> PaymentContext | None:
        """As ``PaymentRepository.context``, in its own statement."""
        ...

    def can_settle(self, effects: Effects) -> bool:
        """Whether :meth:`settle` supports this shape of effects."""
        ...

    async def settle(
        self,
        payment_id: str,
        to: PaymentStatus,
        now: datetime,
        *,
        external_id: str | None,
        saved_method_id: str | None,
        effects: Effects,
    ) -> Payment | None:
        """Atomic and committed when it returns: the transition and *effects*, or None
        and nothing when the transition was not possible."""
        ...
