"""Auto-renewal by a saved payment method (YooKassa): when the balance does not cover a
renewal, the method the customer saved with an earlier payment is charged.

The renewal scan stores the order (``ar_{sub}_{expiry}``: one per period, by primary key)
and a CREATED payment, and enqueues the charge in the same transaction; the outbox runs
it after commit. The charge carries the payment's id as YooKassa's Idempotence-Key, so a
retry after a crash or a timeout is the same payment, never a second one. The
subscription is extended only when YooKassa says the payment succeeded, through the one
exactly-once confirmation path (``ConfirmPayment``), never optimistically; a declined or
refused charge tells the customer. Switching auto-renewal off before the charge runs
cancels it.
"""

from __future__ import annotations

import logging
from datetime import datetime

import attrs

from vpnshop.domain.errors import NotFoundError
from vpnshop.domain.money import Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind, OutboxJob
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.plan import Plan
from vpnshop.ports.payments import (
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    ProviderPayment,
    ProviderRejectedError,
    ProviderStatus,
)
from vpnshop.ports.recurring import SavedMethodCharger
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps, enqueue

log = logging.getLogger(__name__)

CHARGE_SAVED_METHOD = "charge_saved_method"  # the outbox job kind


async def saved_method(uow: UnitOfWork, customer_id: int, provider: str) -> str | None:
    """The payment method the customer saved with their latest successful payment at
    *provider*, if any."""
    for p in await uow.payments.recent(limit=20, customer_id=customer_id):
        if p.provider == provider and p.saved_method_id and p.status is PaymentStatus.SUCCEEDED:
            return p.saved_method_id
    return None


async def start_saved_method_renewal(
    uow: UnitOfWork,
    *,
    customer_id: int,
    plan: Plan,
    price: Money,
    order_id: str,
    provider: str,
    method_id: str,
    now: datetime,
) -> None:
    """In the scan's transaction: the order, a CREATED payment and the charge job."""
    await uow.orders.add(
        Order(
            id=order_id,
            customer_id=customer_id,
            kind=OrderKind.PLAN,
            amount=price,
            list_price=price,
            plan_code=plan.code,
            days=plan.duration_days,
            created_at=now,
        )
    )
    payment_id = f"r_{order_id}"
    await uow.payments.add(
        Payment(
            id=payment_id,
            order_id=order_id,
            customer_id=customer_id,
            provider=provider,
            amount=price,
            saved_method_id=method_id,
            created_at=now,
            updated_at=now,
        )
    )
    await enqueue(uow, now, CHARGE_SAVED_METHOD, f"charge:{order_id}", payment_id=payment_id)


@attrs.frozen
class ChargeSavedMethod:
    """The outbox handler of ``charge_saved_method`` jobs."""

    deps: Deps
    gateway: SavedMethodCharger
    confirm: ConfirmPayment

    async def __call__(self, job: OutboxJob) -> None:
        payment_id = str(job.payload["payment_id"])
        async with self.deps.uow() as uow:
            payment = await uow.payments.get(payment_id)
            if payment is None:
                raise NotFoundError(f"payment {payment_id}")
            if payment.status is not PaymentStatus.CREATED:
                return  # charged already (a retried job)
            order = await uow.orders.get(payment.order_id)
            customer = await uow.customers.get(payment.customer_id)
            subs = await uow.subscriptions.for_customer(payment.customer_id)
            assert order is not None
            assert customer is not None
            if not subs or not subs[0].auto_renew or customer.banned:
                # Switched off (or banned) after the scan: nothing is charged.
                await uow.payments.transition(payment.id, PaymentStatus.CANCELED, self.deps.now())
                await uow.commit()
                return
        assert payment.saved_method_id is not None
        request = CheckoutRequest(
            payment_id=payment.id,
            order_id=order.id,
            amount=payment.amount,
            description=f"Auto-renewal: {order.plan_code}",
            idempotency_key=payment.id,
            customer_telegram_id=customer.telegram_id,
            plan_code=order.plan_code,
        )
        try:
            seen = await self.gateway.charge_saved_method(request, payment.saved_method_id)
        except ProviderRejectedError as e:  # unavailability propagates: the outbox retries
            await self._failed(payment, order, subs[0].id, "rejected", str(e))
            return
        if seen.status is ProviderStatus.SUCCEEDED:
            await self.confirm(self._event(payment, EventKind.PAYMENT_SUCCEEDED, seen))
        elif seen.status in (ProviderStatus.CANCELED, ProviderStatus.EXPIRED):
            await self.confirm(self._event(payment, EventKind.PAYMENT_CANCELED, seen))
            await self._failed(payment, order, subs[0].id, "declined", None)
        else:  # still processing: YooKassa's notification (or the re-check) settles it
            async with self.deps.uow() as uow:
                await uow.payments.transition(
                    payment.id, PaymentStatus.PENDING, self.deps.now(), external_id=seen.external_id
                )
                await uow.commit()

    def _event(self, payment: Payment, kind: EventKind, seen: ProviderPayment) -> PaymentEvent:
        return PaymentEvent(
            provider=payment.provider,
            kind=kind,
            dedupe_key=f"charge:{payment.id}",
            external_id=seen.external_id,
            payment_ref=payment.id,
            amount=seen.amount,
            saved_method_id=seen.saved_method_id,
        )

    async def _failed(
        self,
        payment: Payment,
        order: Order,
        subscription_id: int | None,
        reason: str,
        detail: str | None,
    ) -> None:
        log.info("auto-renewal charge %s failed: %s %s", payment.id, reason, detail or "")
        now = self.deps.now()
        async with self.deps.uow() as uow:
            await uow.payments.transition(payment.id, PaymentStatus.CANCELED, now)
            await enqueue(
                uow,
                now,
                JobKind.NOTIFY_CUSTOMER,
                f"notify:renew-failed:{order.id}",
                customer_id=payment.customer_id,
                template="auto_renew_failed",
                subscription_id=subscription_id,
                plan_code=order.plan_code,
                amount=str(payment.amount),
                reason=reason,
                button="pay",
            )
            await uow.commit()
        self.deps.kick()
