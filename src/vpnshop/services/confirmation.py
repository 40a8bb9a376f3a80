"""Confirm a provider's payment: apply an authenticated event to the stored payment,
exactly once. Events of provider-run subscriptions go to their own use cases."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import NoReturn

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import AmountMismatchError
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.payment import OPEN_STATUSES, Payment, PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.payments import EventKind, PaymentEvent
from vpnshop.ports.settlement import Confirmation, PaymentSettler
from vpnshop.ports.storage import PaymentContext, UnitOfWork
from vpnshop.services.deps import Deps, enqueue, record
from vpnshop.services.outcome import Outcome
from vpnshop.services.pricing import promo_once
from vpnshop.services.provider_subscriptions import (
    ApplyProviderSubscriptionPayment,
    CancelProviderSubscription,
)
from vpnshop.services.settlement import effects_for, settle

log = logging.getLogger(__name__)


def _matching(event: PaymentEvent, ctx: PaymentContext | None) -> PaymentContext | None:
    """The context if its payment is the event's: same provider, and the same provider-side
    id when both are known (else it is our payment but another provider-side one)."""
    if ctx is None or ctx.payment.provider != event.provider:
        return None
    stored = ctx.payment.external_id
    if event.external_id and stored and stored != event.external_id:
        return None
    return ctx


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
    # Built from the fields above (also by attrs.evolve), so they never disagree with them.
    subscription_paid: ApplyProviderSubscriptionPayment = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: ApplyProviderSubscriptionPayment(self.deps, self.referral),
            takes_self=True,
        ),
    )
    subscription_cancelled: CancelProviderSubscription = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: CancelProviderSubscription(self.deps), takes_self=True),
    )

    async def __call__(self, event: PaymentEvent) -> Outcome:
        if event.kind is EventKind.PAYMENT_SUCCEEDED:
            return await self._succeeded(event)
        if event.kind in (EventKind.PAYMENT_CANCELED, EventKind.PAYMENT_EXPIRED):
            return await self._closed(event)
        if event.kind in (EventKind.SUBSCRIPTION_STARTED, EventKind.SUBSCRIPTION_RENEWED):
            return await self.subscription_paid(event)
        if event.kind is EventKind.SUBSCRIPTION_CANCELLED:
            return await self.subscription_cancelled(event)
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
