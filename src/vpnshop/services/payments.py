"""Payment use cases: start a checkout, confirm a provider's payment exactly once, pay
from the balance (hold, fulfil, capture; release on failure)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import NoReturn

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import (
    AmountMismatchError,
    ConflictError,
    CustomerBannedError,
    DomainError,
    NotFoundError,
    ValidationError,
)
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.payment import OPEN_STATUSES, Payment, PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.payments import (
    AmountOutOfRangeError,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    PaymentGateway,
)
from vpnshop.ports.settlement import Confirmation, PaymentSettler
from vpnshop.ports.storage import PaymentContext, UnitOfWork
from vpnshop.services.deps import Deps, enqueue, record
from vpnshop.services.ledger import capture_hold, hold_funds, release_hold
from vpnshop.services.pricing import price_plan_order, topup_order
from vpnshop.services.settlement import effects_for, settle

log = logging.getLogger(__name__)

BALANCE = "balance"


class Outcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    DUPLICATE = "duplicate"  # authentic, already applied: answer 2xx, change nothing
    IGNORED = "ignored"  # authentic, nothing to do
    UNKNOWN = "unknown"  # no such payment of ours
    CANCELED = "canceled"


def _matching(event: PaymentEvent, ctx: PaymentContext | None) -> PaymentContext | None:
    """The context if its payment is the event's: same provider, and the same provider-side
    id when both are known (else it is our payment but another provider-side one)."""
    if ctx is None or ctx.payment.provider != event.provider:
        return None
    stored = ctx.payment.external_id
    if event.external_id and stored and stored != event.external_id:
        return None
    return ctx


async def promo_once(uow: UnitOfWork, ctx: PaymentContext) -> bool:
    """Whether the order's promo code (if any) may be redeemed once per customer only."""
    if not ctx.order.promo_code:
        return True
    promo = await uow.promos.get(ctx.order.promo_code)
    return promo.once_per_customer if promo is not None else True


@attrs.frozen
class ConfirmPayment:
    """Apply an authenticated provider event to the stored payment, exactly once.

    The event must match the stored payment's provider, and its amount and currency must
    equal the order's; a mismatch is never credited: it is audited, reported to the
    admins, and raised as AmountMismatchError. Finalisation is one conditional UPDATE, so
    with any number of concurrent deliveries and replicas exactly one caller fulfils.
    """

    deps: Deps
    referral: ReferralPolicy = attrs.field(factory=ReferralPolicy)
    settler: PaymentSettler | None = None  # the store's two-statement fast path, if any

    async def __call__(self, event: PaymentEvent) -> Outcome:
        if event.kind is EventKind.PAYMENT_SUCCEEDED:
            return await self._succeeded(event)
        if event.kind in (EventKind.PAYMENT_CANCELED, EventKind.PAYMENT_EXPIRED):
            return await self._closed(event)
        if event.kind in (EventKind.SUBSCRIPTION_STARTED, EventKind.SUBSCRIPTION_RENEWED):
            return await self._provider_subscription_paid(event)
        if event.kind is EventKind.SUBSCRIPTION_CANCELLED:
            return await self._provider_subscription_cancelled(event)
        return Outcome.IGNORED

    async def _context(self, uow: UnitOfWork, event: PaymentEvent) -> PaymentContext | None:
        return _matching(
            event, await uow.payments.context(event.payment_ref, event.provider, event.external_id)
        )

    async def _succeeded(self, event: PaymentEvent) -> Outcome:
        if self.settler is not None:
            outcome = await self._succeeded_fast(event, self.settler)
            if outcome is not None:
                return outcome
        now = self.deps.now()
        actor = Actor.provider(event.provider)
        async with self.deps.uow() as uow:
            ctx = await self._context(uow, event)
            if ctx is None:
                log.warning(
                    "%s event for unknown payment ref=%s ext=%s",
                    event.provider,
                    event.payment_ref,
                    event.external_id,
                )
                return Outcome.UNKNOWN
            payment = ctx.payment
            if payment.status not in OPEN_STATUSES:
                return Outcome.DUPLICATE
            if event.amount != payment.amount:
                await self._refuse_mismatch(uow, event, payment, actor, now)
            effects = effects_for(
                ctx,
                now=now,
                actor=actor,
                policy=self.referral,
                promo_once_per_customer=await promo_once(uow, ctx),
                audit_details={"external_id": event.external_id},
            )
            done = await settle(
                uow,
                payment.id,
                PaymentStatus.SUCCEEDED,
                now,
                effects=effects,
                external_id=event.external_id,
                saved_method_id=event.saved_method_id,
            )
            if done is None:
                return Outcome.DUPLICATE
            await uow.commit()
        self.deps.kick()
        return Outcome.CONFIRMED

    async def _succeeded_fast(self, event: PaymentEvent, settler: PaymentSettler) -> Outcome | None:
        """The common case in one statement; None hands everything else (unknown, already
        settled, mismatched, promo orders, referral bonus days) to the general path,
        which reads the payment and says why."""
        policy = self.referral
        if event.amount is None or policy.referrer_bonus_days or policy.referee_bonus_days:
            return None
        done = await settler.confirm(
            Confirmation(
                provider=event.provider,
                amount=event.amount,
                payment_id=event.payment_ref,
                external_id=event.external_id,
                saved_method_id=event.saved_method_id,
                actor=Actor.provider(event.provider),
                referral_reward_percent=policy.percent,
            ),
            self.deps.now(),
        )
        if done is None:
            return None
        self.deps.kick()
        return Outcome.CONFIRMED

    async def _refuse_mismatch(
        self,
        uow: UnitOfWork,
        event: PaymentEvent,
        payment: Payment,
        actor: Actor,
        now: datetime,
    ) -> NoReturn:
        """Never credit another amount: audit it, tell the admins, and raise."""
        await record(
            uow,
            now,
            actor,
            "payment.amount_mismatch",
            f"payment:{payment.id}",
            expected=str(payment.amount),
            got=str(event.amount),
        )
        await enqueue(
            uow,
            now,
            JobKind.NOTIFY_ADMINS,
            f"mismatch:{event.dedupe_key}",
            template="amount_mismatch",
            payment_id=payment.id,
            expected=str(payment.amount),
            got=str(event.amount),
        )
        await uow.commit()
        raise AmountMismatchError(
            f"payment {payment.id}: expected {payment.amount}, provider said {event.amount}"
        )

    async def _provider_subscription_paid(self, event: PaymentEvent) -> Outcome:
        """A provider-run subscription (Tribute) was paid for a period: record the payment
        under the event's dedupe key (unique per provider, so a redelivery is a duplicate)
        and extend by the mapped plan. Only a signed event ever gets here."""
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

    async def _provider_subscription_cancelled(self, event: PaymentEvent) -> Outcome:
        """Renewals stop at the provider; the time already paid for stays."""
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

    async def _closed(self, event: PaymentEvent) -> Outcome:
        to = (
            PaymentStatus.CANCELED
            if event.kind is EventKind.PAYMENT_CANCELED
            else PaymentStatus.EXPIRED
        )
        async with self.deps.uow() as uow:
            ctx = await self._context(uow, event)
            if ctx is None:
                return Outcome.UNKNOWN
            if await uow.payments.transition(ctx.payment.id, to, self.deps.now()) is None:
                return Outcome.DUPLICATE
            await uow.commit()
        return Outcome.CANCELED


@attrs.frozen
class CheckoutLink:
    payment_id: str
    order: Order
    url: str | None
    invoice_payload: str | None


@attrs.frozen
class StartCheckout:
    """Price an order on the server, store the payment, then create it at the provider.

    The payment is stored before the provider is called, and the provider is given an
    idempotency key derived from it, so a retry never creates a second charge.
    """

    deps: Deps
    gateways: Mapping[str, PaymentGateway]

    async def __call__(
        self,
        customer_id: int,
        provider: str,
        *,
        plan_code: str | None = None,
        topup: Money | None = None,
        promo_code: str | None = None,
        return_url: str | None = None,
        email: str | None = None,
    ) -> CheckoutLink:
        gateway = self.gateways.get(provider)
        if gateway is None:
            raise ValidationError(f"payment method {provider!r} is not available")
        now = self.deps.now()
        async with self.deps.uow() as uow:
            customer = await uow.customers.get(customer_id)
            if customer is None:
                raise NotFoundError(f"customer {customer_id}")
            if customer.banned:
                raise CustomerBannedError("banned customers cannot buy")
            if plan_code is not None:
                order = await price_plan_order(
                    uow,
                    self.deps,
                    customer_id=customer_id,
                    plan_code=plan_code,
                    cur=gateway.currency,
                    promo_code=promo_code,
                )
            elif topup is not None:
                if topup.currency != gateway.currency:
                    raise ValidationError(f"{provider} takes {gateway.currency.code}")
                order = topup_order(self.deps, customer_id=customer_id, amount=topup)
            else:
                raise ValidationError("a checkout buys a plan or tops up the balance")
            check_limits(gateway, order.amount)
            payment = Payment(
                id=self.deps.ids.new_id(),
                order_id=order.id,
                customer_id=customer_id,
                provider=provider,
                amount=order.amount,
                created_at=now,
                updated_at=now,
            )
            await uow.orders.add(order)
            await uow.payments.add(payment)
            await record(
                uow,
                now,
                Actor.customer(customer.telegram_id),
                "checkout.start",
                f"payment:{payment.id}",
                provider=provider,
                amount=str(order.amount),
            )
            await uow.commit()
        checkout = await gateway.create_payment(
            CheckoutRequest(
                payment_id=payment.id,
                order_id=order.id,
                amount=order.amount,
                description=_describe(order),
                idempotency_key=f"pay:{payment.id}",
                customer_telegram_id=customer.telegram_id,
                return_url=return_url,
                email=email,
                plan_code=order.plan_code,
            )
        )
        async with self.deps.uow() as uow:
            await uow.payments.transition(
                payment.id,
                PaymentStatus.PENDING,
                self.deps.now(),
                external_id=checkout.external_id,
                confirmation_url=checkout.url,
            )
            await uow.commit()
        return CheckoutLink(payment.id, order, checkout.url, checkout.invoice_payload)


def check_limits(gateway: PaymentGateway, amount: Money) -> None:
    low, high = gateway.min_amount, gateway.max_amount
    if low is not None and amount < low:
        raise AmountOutOfRangeError(f"{gateway.name}: the minimum is {low}")
    if high is not None and amount > high:
        raise AmountOutOfRangeError(f"{gateway.name}: the maximum is {high}")


def _describe(order: Order) -> str:
    if order.kind is OrderKind.TOPUP:
        return f"Balance top-up {order.amount}"
    return f"VPN {order.plan_code}, {order.days} days"


@attrs.frozen
class PayFromBalance:
    """Buy a plan with the balance: hold the money, fulfil, capture; release on failure.

    Three short transactions, so that a failed fulfilment gives the money back and a
    crash between them leaves a visible HELD hold rather than money in limbo.
    """

    deps: Deps

    async def __call__(
        self,
        customer_id: int,
        plan_code: str,
        cur: Currency,
        *,
        actor: Actor,
        promo_code: str | None = None,
        order_id: str | None = None,
    ) -> Payment:
        now = self.deps.now()
        async with self.deps.uow() as uow:
            customer = await uow.customers.get(customer_id)
            if customer is None:
                raise NotFoundError(f"customer {customer_id}")
            if customer.banned:
                raise CustomerBannedError("banned customers cannot buy")
            order = await price_plan_order(
                uow,
                self.deps,
                customer_id=customer_id,
                plan_code=plan_code,
                cur=cur,
                promo_code=promo_code,
            )
            if order_id is not None:  # a caller-chosen id makes a retried purchase idempotent
                order = attrs.evolve(order, id=order_id)
                if await uow.orders.get(order_id) is not None:
                    raise ValidationError(f"order {order_id} exists")
            payment = Payment(
                id=f"b_{order.id}",
                order_id=order.id,
                customer_id=customer_id,
                provider=BALANCE,
                amount=order.amount,
                status=PaymentStatus.PENDING,
                external_id=f"hold:{order.id}",
                created_at=now,
                updated_at=now,
            )
            await uow.orders.add(order)
            await uow.payments.add(payment)
            hold = await hold_funds(
                uow,
                self.deps,
                customer_id=customer_id,
                amount=order.amount,
                order_id=order.id,
                actor=actor,
            )
            await uow.commit()
        try:
            async with self.deps.uow() as uow:
                ctx = await uow.payments.context(payment.id, BALANCE, None)
                assert ctx is not None
                now = self.deps.now()
                effects = effects_for(
                    ctx,
                    now=now,
                    actor=actor,
                    policy=ReferralPolicy(),
                    promo_once_per_customer=await promo_once(uow, ctx),
                )
                done = await settle(uow, payment.id, PaymentStatus.SUCCEEDED, now, effects=effects)
                if done is None:
                    raise DomainError(f"payment {payment.id} was finalised elsewhere")
                await capture_hold(uow, hold.id)
                await uow.commit()
        except BaseException:
            async with self.deps.uow() as uow:
                await release_hold(uow, self.deps, hold.id, Actor.system("release"))
                await uow.payments.transition(payment.id, PaymentStatus.CANCELED, self.deps.now())
                await uow.commit()
            raise
        self.deps.kick()
        return done
