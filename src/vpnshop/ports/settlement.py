"""An optional fast path of the storage port: confirming the common payment in one
statement.

The common case is a provider confirming, with the right amount, an open payment whose
order carries no promo code, while the referral policy grants no bonus days. A store that
can settle that case in one atomic statement (the transition and exactly the effects the
settlement rules of ``vpnshop.domain.settlement`` describe, applied as ``settle_stepwise``
would)
lets ConfirmPayment take one round trip instead of a transaction's worth. Anything else
(unknown, already settled, mismatched, promo orders) matches nothing, and the caller takes
the general path, which finds out why. The service and concurrency tests run through it on
PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.money import Money
from vpnshop.domain.payment import Payment
from vpnshop.domain.settlement import audit_details


@attrs.frozen
class Confirmation:
    """A provider's confirmation of one payment, found by our id or else by the
    provider's id."""

    provider: str
    amount: Money
    payment_id: str | None
    external_id: str | None
    saved_method_id: str | None
    actor: Actor
    referral_reward_percent: int  # the policy's share for the referrer; 0 for none

    @property
    def audit_details(self) -> dict[str, str | None]:
        """What the "payment.succeeded" audit entry records."""
        return audit_details(self.amount, self.external_id)


class PaymentSettler(Protocol):
    async def confirm(self, confirmation: Confirmation, now: datetime) -> Payment | None:
        """Atomic: succeed the open payment that matches the confirmation (provider,
        amount and currency, and the provider's id when both sides know it) and whose
        order has no promo code, with the standard effects of its order; return it, or
        None and change nothing."""
        ...


class BatchStats(Protocol):
    """How a batching settler has worked so far (read by the metrics at scrape time):
    confirmations per batch is ``items / batches``."""

    @property
    def batches(self) -> int:
        """Transactions run."""
        ...

    @property
    def items(self) -> int:
        """Confirmations run, in all batches."""
        ...

    @property
    def retried(self) -> int:
        """Batches that failed as a whole and were run one confirmation at a time."""
        ...
