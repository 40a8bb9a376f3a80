"""Subscriptions run by the provider (Tribute): a paid period arrives as an event with no
checkout of ours behind it, so the customer, the order and the payment are made from the
event; a cancellation stops renewals and keeps the time already paid for."""

from __future__ import annotations

import logging

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.payments import PaymentEvent
from vpnshop.services.deps import Deps, enqueue, record
from vpnshop.services.outcome import Outcome
from vpnshop.services.settlement import effects_for, settle

log = logging.getLogger(__name__)


@attrs.frozen
class ApplyProviderSubscriptionPayment:
    """A provider-run subscription was paid for a period: record the payment under the
    event's dedupe key (unique per provider, so a redelivery is a duplicate) and extend by
    the mapped plan. Only a signed event ever gets here."""

    deps: Deps
    referral: ReferralPolicy = attrs.field(factory=ReferralPolicy)

    async def __call__(self, event: PaymentEvent) -> Outcome:
        if event.telegram_id is None or event.product is None or event.amount is None:
            log.warning(
                "%s subscription event without customer, product or amount: %s",
                event.provider,
                event.dedupe_key,
            )
            return Outcome.IGNORED
        now = self.deps.now()
        actor = Actor.provider(event.provider)
        async with self.deps.uow() as uow:
            plan = await uow.plans.get(event.product)
            if plan is None:
                await enqueue(
                    uow,
                    now,
                    JobKind.NOTIFY_ADMINS,
                    f"unmapped:{event.dedupe_key}",
                    template="unmapped_product",
                    provider=event.provider,
                    product=event.product,
                    telegram_id=event.telegram_id,
                )
                await uow.commit()
                return Outcome.IGNORED
            customer = await uow.customers.by_telegram_id(event.telegram_id)
            if customer is None:  # paid before ever opening the bot: keep their money's worth
                # get_or_add: concurrent first deliveries for this user all get the customer.
                customer, _ = await uow.customers.get_or_add(
                    Customer(id=None, telegram_id=event.telegram_id, created_at=now)
                )
            assert customer.id is not None
            order = (
                Order(
                    id=self.deps.ids.new_id(),
                    customer_id=customer.id,
                    kind=OrderKind.PLAN,
                    amount=event.amount,
                    list_price=event.amount,
                    plan_code=plan.code,
                    days=plan.duration_days,
                    created_at=now,
                )
                if event.amount.is_positive
                else None
            )
            if order is None:
                log.warning(
                    "%s: zero-amount subscription event %s (trial or gift) ignored",
                    event.provider,
                    event.dedupe_key,
                )
                return Outcome.IGNORED
            payment = Payment(
                id=self.deps.ids.new_id(),
                order_id=order.id,
                customer_id=customer.id,
                provider=event.provider,
                amount=event.amount,
                status=PaymentStatus.CREATED,
                external_id=event.dedupe_key,
                created_at=now,
                updated_at=now,
            )
            await uow.orders.add(order)
            try:
                await uow.payments.add(payment)
            except ConflictError:
                return Outcome.DUPLICATE
            ctx = await uow.payments.context(payment.id, event.provider, None)
            assert ctx is not None
            effects = effects_for(
                ctx,
                now=now,
                actor=actor,
                policy=self.referral,
                audit_details={"event": event.kind.value, "dedupe_key": event.dedupe_key},
            )
            await settle(uow, payment.id, PaymentStatus.SUCCEEDED, now, effects=effects)
            await uow.commit()
        self.deps.kick()
        return Outcome.CONFIRMED


@attrs.frozen
class CancelProviderSubscription:
    """Renewals stop at the provider; the time already paid for stays, and the customer is
    told once per event."""

    deps: Deps

    async def __call__(self, event: PaymentEvent) -> Outcome:
        if event.telegram_id is None:
            return Outcome.IGNORED
        now = self.deps.now()
        async with self.deps.uow() as uow:
            customer = await uow.customers.by_telegram_id(event.telegram_id)
            if customer is None:
                return Outcome.UNKNOWN
            if not await enqueue(
                uow,
                now,
                JobKind.NOTIFY_CUSTOMER,
                f"notify:{event.dedupe_key}",
                customer_id=customer.id,
                template="provider_subscription_cancelled",
                provider=event.provider,
            ):
                return Outcome.DUPLICATE
            await record(
                uow,
                now,
                Actor.provider(event.provider),
                "subscription.cancelled",
                f"customer:{customer.id}",
                product=event.product,
            )
            await uow.commit()
        return Outcome.CANCELED
