"""Stray charges: money a provider took that no payment of ours holds, given back.

Telegram Stars is where it happens: two devices pay one invoice at once, both
pre-checkouts are answered while the order is still open, and Telegram charges twice.
The first charge settles the payment; the second finds it paid and would be kept for
nothing. :class:`ReturnStrayCharge` records it and queues its return in one transaction
(exactly once per charge, whoever receives it and however often); the outbox's
:class:`ReturnCharge` gives it back through the gateway and then tells the customer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.outbox import JobKind, OutboxJob
from vpnshop.ports.payments import (
    ChargeReturner,
    EventKind,
    PaymentEvent,
    ProviderRejectedError,
)
from vpnshop.services.deps import Deps, enqueue, record
from vpnshop.services.outbox import PermanentJobError
from vpnshop.services.outcome import Outcome

log = logging.getLogger(__name__)

RETURN_CHARGE: Final = "return_charge"  # the outbox job kind


@attrs.frozen
class ReturnStrayCharge:
    """A successful charge that ConfirmPayment did not settle (the order was paid by
    another charge, or names no payment of ours) and that the store holds no payment for:
    audited, the admins told, its return queued. Returns RETURNED; DUPLICATE when the
    store holds the charge (a redelivered update of the charge that paid)."""

    deps: Deps

    async def __call__(self, event: PaymentEvent) -> Outcome:
        charge, payer, amount = event.external_id, event.telegram_id, event.amount
        if (
            event.kind is not EventKind.PAYMENT_SUCCEEDED
            or not charge
            or payer is None
            or amount is None
        ):
            return Outcome.UNKNOWN
        shown = str(amount)
        now = self.deps.now()
        key = f"stray:{event.provider}:{charge}"
        async with self.deps.uow() as uow:
            if await uow.payments.by_external_id(event.provider, charge) is not None:
                return Outcome.DUPLICATE
            customer = await uow.customers.by_telegram_id(payer)
            queued = await enqueue(
                uow,
                now,
                RETURN_CHARGE,
                key,
                provider=event.provider,
                external_id=charge,
                telegram_id=payer,
                customer_id=customer.id if customer is not None else None,
                amount=shown,
            )
            if not queued:
                return Outcome.RETURNED  # a redelivery: its return is queued already
            await record(
                uow,
                now,
                Actor.provider(event.provider),
                "payment.stray_charge",
                f"payment:{event.payment_ref}",
                external_id=charge,
                telegram_id=payer,
                amount=shown,
            )
            await enqueue(
                uow,
                now,
                JobKind.NOTIFY_ADMINS,
                f"admins:{key}",
                template="stray_charge",
                payment_id=event.payment_ref or "-",
                amount=shown,
                charge=charge,
                telegram_id=payer,
            )
            await uow.commit()
        log.warning(
            "%s charge %s by user %s (%s) holds no payment of ours (payment %s paid "
            "otherwise?): returning it",
            event.provider,
            charge,
            payer,
            amount,
            event.payment_ref,
        )
        self.deps.kick()
        return Outcome.RETURNED


@attrs.frozen
class ReturnCharge:
    """The outbox handler of ``return_charge`` jobs: give the charge back through its
    gateway (a retry after a crash is harmless: a charge given back already is
    success), then tell the customer. A refusal parks the job for an admin."""

    deps: Deps
    gateways: Mapping[str, ChargeReturner]

    async def __call__(self, job: OutboxJob) -> None:
        payload = job.payload
        provider = str(payload["provider"])
        gateway = self.gateways.get(provider)
        if gateway is None:
            raise PermanentJobError(f"{provider} cannot give charges back in this process")
        charge = str(payload["external_id"])
        try:
            await gateway.return_charge(charge, int(str(payload["telegram_id"])))
        except ProviderRejectedError as e:  # unavailability propagates: the outbox retries
            raise PermanentJobError(f"{provider} charge {charge} not given back: {e}") from e
        customer_id = payload.get("customer_id")
        if customer_id is None:
            return
        async with self.deps.uow() as uow:
            await enqueue(
                uow,
                self.deps.now(),
                JobKind.NOTIFY_CUSTOMER,
                f"returned:{provider}:{charge}",
                customer_id=customer_id,
                template="charge_returned",
                amount=payload.get("amount"),
            )
            await uow.commit()
        self.deps.kick()
