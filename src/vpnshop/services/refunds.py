"""Refunds and re-checks: money going back, and payments whose webhook never came."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import (
    ConflictError,
    InsufficientFundsError,
    NotFoundError,
    ValidationError,
)
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.payment import Payment
from vpnshop.domain.settlement import APPLY, Ref
from vpnshop.ports.payments import (
    EventKind,
    PaymentEvent,
    PaymentGateway,
    PaymentProviderError,
    ProviderStatus,
)
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.balance_payments import BALANCE
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps, enqueue, record
from vpnshop.services.ledger import post_entry
from vpnshop.services.outcome import Outcome
from vpnshop.services.subscriptions import current_subscription

log = logging.getLogger(__name__)


@attrs.frozen
class RefundResult:
    payment: Payment
    amount: Money
    to_balance: bool
    days_removed: int


@attrs.frozen
class RefundPayment:
    """An admin refunds a succeeded payment, fully or partly.

    Through the provider's refund API where it has one, else to the customer's balance. A
    plan purchase loses the refunded share of its days; a refunded top-up is debited from
    the balance. Exactly once: the refund is counted by one conditional UPDATE that keeps
    the total within the payment, and every ledger key derives from the refunded total.
    """

    deps: Deps
    gateways: Mapping[str, PaymentGateway]

    async def __call__(
        self, payment_id: str, *, admin: Actor, reason: str, amount: Money | None = None
    ) -> RefundResult:
        if not reason.strip():
            raise ValidationError("a refund needs a reason")
        async with self.deps.uow() as uow:
            payment = await uow.payments.get(payment_id)
            if payment is None:
                raise NotFoundError(f"payment {payment_id}")
            order = await uow.orders.get(payment.order_id)
            if order is None:
                raise NotFoundError(f"order {payment.order_id}")
            refundable = payment.refundable
            amount = amount or refundable
            if amount.currency != payment.amount.currency or not amount.is_positive:
                raise ValidationError(f"refund must be a positive {payment.amount.currency}")
            if amount > refundable:
                raise ValidationError(f"at most {refundable} can be refunded")
            if order.kind is OrderKind.TOPUP:
                balance = await uow.ledger.balance(payment.customer_id, amount.currency)
                if balance < amount:
                    raise InsufficientFundsError(
                        f"the top-up was spent: balance {balance} < refund {amount}"
                    )
        gateway = self.gateways.get(payment.provider)
        through_provider = gateway is not None and gateway.supports_refund
        if not through_provider and order.kind is OrderKind.TOPUP:
            raise ValidationError("a top-up cannot be refunded to the balance it went to")
        already = payment.refunded.minor if payment.refunded else 0
        key = f"refund:{payment.id}:{already + amount.minor}"
        if through_provider:
            assert gateway is not None
            if payment.external_id is None:
                raise ValidationError(f"payment {payment.id} has no provider id to refund")
            await gateway.refund(payment.external_id, amount, key)
        now = self.deps.now()
        async with self.deps.uow() as uow:
            updated = await uow.payments.add_refund(payment.id, amount, now)
            if updated is None:
                raise ConflictError(f"payment {payment.id} changed while refunding; look again")
            days = await refund_effects(
                uow,
                self.deps,
                payment=payment,
                order=order,
                amount=amount,
                key=key,
                actor=admin,
                to_balance=not through_provider,
                memo=reason,
                audit={"reason": reason, "to_balance": not through_provider},
            )
            await uow.commit()
        self.deps.kick()
        return RefundResult(updated, amount, not through_provider, days)


async def refund_effects(
    uow: UnitOfWork,
    deps: Deps,
    *,
    payment: Payment,
    order: Order,
    amount: Money,
    key: str,
    actor: Actor,
    to_balance: bool,
    memo: str,
    audit: Mapping[str, object],
) -> int:
    """What refunding *amount* of *payment* changes, in the caller's transaction, after
    ``payments.add_refund`` accepted it: a top-up's credit is taken back, or the money goes
    to the balance (*to_balance*, a refund the provider cannot make); a plan's days are
    removed in proportion (the panel follows through the outbox); the customer is told and
    the refund audited. Returns the days removed. The one rule for admin refunds and for
    refunds a provider reports."""
    now = deps.now()
    if order.kind is OrderKind.TOPUP or to_balance:
        await post_entry(
            uow,
            deps,
            customer_id=payment.customer_id,
            amount=-amount if order.kind is OrderKind.TOPUP else amount,
            kind=EntryKind.REFUND,
            key=key,
            actor=actor,
            reference=payment.id,
            memo=memo,
        )
    days = order.days * amount.minor // order.amount.minor if order.days else 0
    if days > 0:
        await uow.customers.lock(payment.customer_id)
        sub = await current_subscription(uow, payment.customer_id)
        if sub is not None:
            await uow.subscriptions.update(sub.shortened(days, now))
            await uow.outbox.add(APPLY.job({Ref.SUBSCRIPTION: sub.id, Ref.REASON: key}, now))
    await enqueue(
        uow,
        now,
        JobKind.NOTIFY_CUSTOMER,
        f"notify:{key}",
        customer_id=payment.customer_id,
        template="refund",
        amount=str(amount),
        to_balance=to_balance,
    )
    await record(
        uow,
        now,
        actor,
        "payment.refund",
        f"payment:{payment.id}",
        amount=str(amount),
        days_removed=days,
        **audit,  # what this kind of refund adds (the reason, the provider's refund id)
    )
    return days


@attrs.frozen
class RecheckReport:
    checked: int = 0
    confirmed: int = 0
    closed: int = 0
    failed: int = 0


@attrs.frozen
class RecheckPending:
    """Ask providers about payments pending longer than *older_than* (lost webhooks,
    blocked addresses) and settle them through the same exactly-once path."""

    deps: Deps
    gateways: Mapping[str, PaymentGateway]
    confirm: ConfirmPayment

    async def __call__(
        self, older_than: timedelta = timedelta(minutes=10), limit: int = 100
    ) -> RecheckReport:
        async with self.deps.uow() as uow:
            stale = await uow.payments.open_older_than(self.deps.now() - older_than, limit)
        checked = confirmed = closed = failed = 0
        for payment in stale:
            gateway = self.gateways.get(payment.provider)
            if gateway is None or payment.provider == BALANCE:
                continue
            checked += 1
            try:
                seen = await gateway.fetch_payment(payment.id, payment.external_id)
            except PaymentProviderError as e:
                log.info("re-check of %s at %s failed: %s", payment.id, payment.provider, e)
                failed += 1
                continue
            if seen is None:
                continue
            kind = {
                ProviderStatus.SUCCEEDED: EventKind.PAYMENT_SUCCEEDED,
                ProviderStatus.CANCELED: EventKind.PAYMENT_CANCELED,
                ProviderStatus.EXPIRED: EventKind.PAYMENT_EXPIRED,
            }.get(seen.status)
            if kind is None:
                continue
            outcome = await self.confirm(
                PaymentEvent(
                    provider=payment.provider,
                    kind=kind,
                    dedupe_key=f"recheck:{payment.id}",
                    external_id=seen.external_id,
                    payment_ref=payment.id,
                    amount=seen.amount,
                    saved_method_id=seen.saved_method_id,
                )
            )
            if outcome is Outcome.CONFIRMED:
                confirmed += 1
            elif outcome is Outcome.CANCELED:
                closed += 1
        return RecheckReport(checked, confirmed, closed, failed)


__all__ = ["RecheckPending", "RecheckReport", "RefundPayment", "RefundResult"]
