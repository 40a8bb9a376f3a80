"""Redeeming a promo code typed in by a customer (or arriving in a ``promo_`` link)."""

from __future__ import annotations

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import (
    PromoExhaustedError,
    PromoNotApplicableError,
    PromoUsedError,
)
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import Money, currency
from vpnshop.domain.promo import PromoCode, PromoKind, PromoRedemption
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.customers import buyable_customer
from vpnshop.services.deps import Deps, record
from vpnshop.services.ledger import post_entry
from vpnshop.services.pricing import usable_promo
from vpnshop.services.subscriptions import current_subscription, extend_in


@attrs.frozen
class PromoApplied:
    """What a redeemed code did, for the customer to see.

    BONUS_DAYS and TRIAL_DAYS: ``subscription`` as extended. BALANCE: ``credited``.
    DISCOUNT: ``discount_percent``, kept on the customer for their next purchase.
    """

    code: str
    kind: PromoKind
    subscription: Subscription | None = None
    credited: Money | None = None
    discount_percent: int | None = None


@attrs.frozen
class RedeemPromo:
    """Apply a promo code for a customer, or raise the PromoError subclass that says why
    not: PromoUnknownError, PromoExpiredError, PromoUsedError, PromoExhaustedError,
    PromoNotApplicableError (``reason``: ``trial_not_started``, ``not_on_trial``).

    Days and balance codes are redeemed in the transaction that applies them, through
    ``promos.redeem``, one conditional UPDATE of the use counter plus a unique
    (code, customer) row: concurrent redemptions never exceed the total uses, nor apply
    twice for one customer. A discount is only kept on the customer: its use is counted
    when an order carrying it is paid (``services.pricing.kept_discount``), the one place
    where discounts are spent.
    """

    deps: Deps

    async def __call__(self, customer_id: int, code: str) -> PromoApplied:
        now = self.deps.now()
        async with self.deps.uow() as uow:
            customer = await buyable_customer(
                uow, customer_id, refusal="banned customers cannot redeem promo codes"
            )
            promo = await usable_promo(uow, code, customer_id, now)
            if promo.kind is PromoKind.DISCOUNT:
                applied = PromoApplied(promo.code, promo.kind, discount_percent=promo.value)
                await uow.customers.set_discount_code(customer_id, promo.code)
            else:
                applied = await self._redeem(uow, customer_id, promo)
            await record(
                uow,
                now,
                Actor.customer(customer.telegram_id),
                "promo.redeem",
                f"customer:{customer_id}",
                code=promo.code,
                kind=promo.kind.value,
                value=promo.value,
            )
            await uow.commit()
        if applied.subscription is not None:
            self.deps.kick()
        return applied

    async def _redeem(self, uow: UnitOfWork, customer_id: int, promo: PromoCode) -> PromoApplied:
        if promo.kind is PromoKind.TRIAL_DAYS:
            await _check_on_trial(uow, customer_id)
        redeemed = await uow.promos.redeem(
            PromoRedemption(promo.code, customer_id, self.deps.now()),
            once_per_customer=promo.once_per_customer,
            max_uses=promo.max_uses,
        )
        if not redeemed:  # a concurrent redemption got there first; the database said no
            if promo.once_per_customer and await uow.promos.redeemed(promo.code, customer_id):
                raise PromoUsedError(f"customer {customer_id} has used {promo.code}")
            raise PromoExhaustedError(f"promo code {promo.code} has no uses left")
        # Once-only codes get a key of their own, a second guard beside the unique row.
        unique = "" if promo.once_per_customer else f":{self.deps.ids.new_id()}"
        reason = f"promo:{promo.code}:{customer_id}{unique}"
        if promo.kind is PromoKind.BALANCE:
            assert promo.currency is not None  # PromoCode requires it for BALANCE
            amount = Money(promo.value, currency(promo.currency))
            await post_entry(
                uow,
                self.deps,
                customer_id=customer_id,
                amount=amount,
                kind=EntryKind.PROMO_CREDIT,
                key=reason,
                actor=Actor.system("promo"),
                reference=f"promo:{promo.code}",
            )
            return PromoApplied(promo.code, promo.kind, credited=amount)
        sub = await extend_in(
            uow, self.deps, customer_id=customer_id, days=promo.value, plan=None, reason=reason
        )
        return PromoApplied(promo.code, promo.kind, subscription=sub)


async def _check_on_trial(uow: UnitOfWork, customer_id: int) -> None:
    """A trial extension needs a trial to extend: taken, and not since paid for."""
    if not await uow.trials.used(customer_id):
        raise PromoNotApplicableError("trial_not_started", "activate the free trial first")
    sub = await current_subscription(uow, customer_id)
    if sub is None or not sub.is_trial:
        raise PromoNotApplicableError("not_on_trial", "the subscription is no longer a trial")
