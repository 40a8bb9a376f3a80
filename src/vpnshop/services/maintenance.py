"""Housekeeping of payments and orders: expire payments past their lifetime, remove
orders nobody paid for.

A payment is never expired on our side alone while its provider might have taken the
money: before expiring, the provider is asked, a success is confirmed through the same
exactly-once path as a webhook, and a provider that cannot answer now keeps the payment
open until the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

import attrs

from vpnshop.ports.payments import (
    EventKind,
    PaymentEvent,
    PaymentGateway,
    PaymentProviderError,
    ProviderStatus,
)
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps
from vpnshop.services.outcome import Outcome

log = logging.getLogger(__name__)


@attrs.frozen
class ExpireReport:
    expired: int = 0
    confirmed: int = 0  # the provider had taken the money after all
    kept: int = 0  # the provider could not answer; asked again next run


@attrs.frozen
class ExpirePayments:
    """Close payments still open *lifetime* after they were created."""

    deps: Deps
    gateways: Mapping[str, PaymentGateway]
    confirm: ConfirmPayment

    async def __call__(self, lifetime: timedelta, limit: int = 200) -> ExpireReport:
        async with self.deps.uow() as uow:
            stale = await uow.payments.open_older_than(self.deps.now() - lifetime, limit)
        expired = confirmed = kept = 0
        for payment in stale:
            kind = EventKind.PAYMENT_EXPIRED
            seen = None
            gateway = self.gateways.get(payment.provider)
            if gateway is not None:
                try:
                    seen = await gateway.fetch_payment(payment.id, payment.external_id)
                except PaymentProviderError as e:
                    log.info("expiry of %s: %s did not answer: %s", payment.id, payment.provider, e)
                    kept += 1
                    continue
                if seen is not None and seen.status is ProviderStatus.SUCCEEDED:
                    kind = EventKind.PAYMENT_SUCCEEDED
                elif seen is not None and seen.status is ProviderStatus.CANCELED:
                    kind = EventKind.PAYMENT_CANCELED
            else:
                log.info("expiring %s: provider %s is not configured", payment.id, payment.provider)
            outcome = await self.confirm(
                PaymentEvent(
                    provider=payment.provider,
                    kind=kind,
                    dedupe_key=f"expire:{payment.id}",
                    external_id=seen.external_id if seen is not None else payment.external_id,
                    payment_ref=payment.id,
                    # what the provider says was paid: the core checks it against the order
                    amount=seen.amount if seen is not None else None,
                    saved_method_id=seen.saved_method_id if seen is not None else None,
                )
            )
            if outcome is Outcome.CONFIRMED:
                confirmed += 1
            elif outcome is Outcome.CANCELED:
                expired += 1
        return ExpireReport(expired, confirmed, kept)


@attrs.frozen
class CleanupOrders:
    """Delete orders older than *age* that no payment, hold or promo redemption refers
    to (checkouts that never reached a provider)."""

    deps: Deps
    batch: int = 1000

    async def __call__(self, age: timedelta, max_batches: int = 100) -> int:
        removed = 0
        for _ in range(max_batches):
            async with self.deps.uow() as uow:
                n = await uow.orders.delete_abandoned(self.deps.now() - age, self.batch)
                await uow.commit()
            removed += n
            if n < self.batch:
                break
        return removed
