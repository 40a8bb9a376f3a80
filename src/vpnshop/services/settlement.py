"""Settling a payment: its transition and everything it changes, in one transaction.

The effects are decided by the domain's settlement rules (``vpnshop.domain.settlement``),
from the order and the policies; the store applies them. ``settle_stepwise`` is the
reference: plain repository calls in the caller's transaction. A store with the
AtomicSettlement capability does the same in one statement.
"""

from __future__ import annotations

from datetime import datetime

from vpnshop.domain.actor import Actor
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.domain.settlement import APPLY, Effects, Extension, Ref, settlement_effects
from vpnshop.domain.subscription import extend_or_start
from vpnshop.ports.storage import AtomicSettlement, PaymentContext, UnitOfWork


def effects_for(
    ctx: PaymentContext,
    *,
    now: datetime,
    actor: Actor,
    policy: ReferralPolicy,
    promo_once_per_customer: bool = True,
    audit_details: dict[str, object] | None = None,
) -> Effects:
    """What succeeding *ctx*'s payment delivers (``domain.settlement`` decides)."""
    return settlement_effects(
        ctx.payment,
        ctx.order,
        ctx.plan,
        ctx.referrer_id,
        now=now,
        actor=actor,
        policy=policy,
        promo_once_per_customer=promo_once_per_customer,
        details=audit_details,
    )


async def settle(
    uow: UnitOfWork,
    payment_id: str,
    to: PaymentStatus,
    now: datetime,
    *,
    effects: Effects,
    external_id: str | None = None,
    saved_method_id: str | None = None,
) -> Payment | None:
    """Transition the payment and apply *effects*, in the caller's transaction; None (and
    nothing changed by this call) when the transition was not possible."""
    if isinstance(uow, AtomicSettlement) and uow.can_settle(effects):
        return await uow.settle(
            payment_id,
            to,
            now,
            external_id=external_id,
            saved_method_id=saved_method_id,
            effects=effects,
        )
    return await settle_stepwise(
        uow,
        payment_id,
        to,
        now,
        effects=effects,
        external_id=external_id,
        saved_method_id=saved_method_id,
    )


async def _extend(uow: UnitOfWork, ext: Extension, now: datetime) -> None:
    await uow.customers.lock(ext.customer_id)  # concurrent extensions lose no days
    subs = await uow.subscriptions.for_customer(ext.customer_id)
    sub = extend_or_start(subs[0] if subs else None, ext.customer_id, ext.days, ext.plan, now)
    if sub.id is None:
        sub = await uow.subscriptions.add(sub)
    else:
        await uow.subscriptions.update(sub)
    await uow.outbox.add(APPLY.job({Ref.SUBSCRIPTION: sub.id, Ref.REASON: ext.reason}, now))


async def settle_stepwise(
    uow: UnitOfWork,
    payment_id: str,
    to: PaymentStatus,
    now: datetime,
    *,
    effects: Effects,
    external_id: str | None = None,
    saved_method_id: str | None = None,
) -> Payment | None:
    done = await uow.payments.transition(
        payment_id, to, now, external_id=external_id, saved_method_id=saved_method_id
    )
    if done is None:
        return None
    for entry in effects.ledger:
        await uow.ledger.post(entry)
    for ext in effects.extensions:
        await _extend(uow, ext, now)
    bonus = effects.referral_bonus
    if bonus is not None:
        referrer_id = await uow.referrals.claim_bonus(bonus.referee_id, now)
        if referrer_id is not None:  # this payment is the referee's first
            for customer_id, days in (
                (referrer_id, bonus.referrer_days),
                (bonus.referee_id, bonus.referee_days),
            ):
                if days:
                    await _extend(uow, Extension(customer_id, days, None, bonus.reason), now)
    if effects.promo is not None:
        await uow.promos.redeem(
            effects.promo, once_per_customer=effects.promo_once_per_customer, max_uses=None
        )
    for job in effects.jobs:
        await uow.outbox.add(job)
    for record in effects.audit:
        await uow.audit.add(record)
    return done
