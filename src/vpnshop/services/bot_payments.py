"""Payments the bot receives itself (Telegram Stars): the pre-checkout check, and the
``successful_payment`` / ``refunded_payment`` updates applied through the same paths as
every provider's webhook, exactly once."""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from typing import Any

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import Money, currency
from vpnshop.domain.payment import OPEN_STATUSES, PaymentStatus
from vpnshop.ports.payments import (
    ChargeReturner,
    EventKind,
    PaymentEvent,
    PaymentGateway,
    WebhookRequest,
)
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps
from vpnshop.services.outcome import Outcome
from vpnshop.services.refunds import refund_effects
from vpnshop.services.stray_charges import ReturnStrayCharge

log = logging.getLogger(__name__)


class Refusal(enum.StrEnum):
    """Why a pre-checkout is refused (each has its text in the customer's language)."""

    UNKNOWN = "unknown"  # the payload names no payment of ours
    FOREIGN = "foreign"  # another customer's payment
    AMOUNT = "amount"  # amount or currency differ from the stored payment
    CLOSED = "closed"  # paid, cancelled or expired already


@attrs.frozen
class CheckPreCheckout:
    """Check a pre-checkout query against the stored payment: ours, this customer's,
    still payable, the same amount and currency. None: go ahead."""

    deps: Deps

    async def __call__(
        self,
        payment_id: str | None,
        *,
        provider: str,
        currency_code: str,
        total: int,
        telegram_id: int,
    ) -> Refusal | None:
        if payment_id is None:
            return Refusal.UNKNOWN
        async with self.deps.uow() as uow:
            payment = await uow.payments.get(payment_id)
            if payment is None or payment.provider != provider:
                return Refusal.UNKNOWN
            customer = await uow.customers.get(payment.customer_id)
        if customer is None or customer.telegram_id != telegram_id:
            return Refusal.FOREIGN
        try:
            amount = Money(total, currency(currency_code))
        except (DomainError, ValueError, TypeError):
            return Refusal.AMOUNT
        if amount != payment.amount:
            return Refusal.AMOUNT
        if payment.status not in OPEN_STATUSES:
            return Refusal.CLOSED
        return None


@attrs.frozen
class ApplyPaymentUpdate:
    """A payment update the bot received (authentic: it came from Telegram with our
    token or through its secret webhook), parsed by the provider's gateway and applied:
    a payment through ConfirmPayment, a refund through :class:`ApplyProviderRefund`. A
    successful charge that settled nothing and that no payment holds (a second payment of
    a paid order) is given back where the gateway can (:class:`ReturnStrayCharge`)."""

    gateways: Mapping[str, PaymentGateway]
    confirm: ConfirmPayment
    refunded: ApplyProviderRefund
    stray: ReturnStrayCharge

    async def __call__(self, provider: str, update: Mapping[str, Any]) -> Outcome:
        gateway = self.gateways.get(provider)
        if gateway is None:
            log.warning("a %s payment update, but %s is not enabled", provider, provider)
            return Outcome.IGNORED
        body = json.dumps(update).encode()
        event = await gateway.parse_webhook(
            WebhookRequest(body=body, headers={}, remote_ip="", content_type="application/json")
        )
        if event.kind is EventKind.REFUND_SUCCEEDED:
            return await self.refunded(event)
        outcome = await self.confirm(event)
        if (
            outcome in (Outcome.UNKNOWN, Outcome.DUPLICATE)
            and event.kind is EventKind.PAYMENT_SUCCEEDED
            and isinstance(gateway, ChargeReturner)
        ):
            # DUPLICATE too: a second charge racing the first can find the payment open,
            # then lose the conditional update. The store says whether it holds the charge.
            return await self.stray(event)
        return outcome


@attrs.frozen
class ApplyProviderRefund:
    """A refund made at the provider (e.g. Telegram support refunding Stars), applied
    once per charge: the refunded total is counted by one conditional UPDATE, a plan
    loses its days, a top-up is taken back from the balance."""

    deps: Deps

    async def __call__(self, event: PaymentEvent) -> Outcome:
        if event.external_id is None or event.amount is None:
            return Outcome.IGNORED
        now = self.deps.now()
        actor = Actor.provider(event.provider)
        async with self.deps.uow() as uow:
            payment = await uow.payments.by_external_id(event.provider, event.external_id)
            if payment is None:
                return Outcome.UNKNOWN
            if payment.status is not PaymentStatus.SUCCEEDED:
                return Outcome.DUPLICATE
            order = await uow.orders.get(payment.order_id)
            assert order is not None
            amount = min(event.amount, payment.refundable)
            if not amount.is_positive:
                return Outcome.DUPLICATE
            if await uow.payments.add_refund(payment.id, amount, now) is None:
                return Outcome.DUPLICATE
            key = f"refund:{payment.id}:{event.external_id}"
            await refund_effects(
                uow,
                self.deps,
                payment=payment,
                order=order,
                amount=amount,
                key=key,
                actor=actor,
                to_balance=False,
                memo="refunded at the provider",
                audit={"external_id": event.external_id},
            )
            await uow.commit()
        self.deps.kick()
        return Outcome.CONFIRMED
