"""The state behind the main menu, in one read."""

from __future__ import annotations

from datetime import datetime

import attrs

from vpnshop.domain.errors import NotFoundError, PromoError
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.subscription import Subscription, SubscriptionStatus
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps
from vpnshop.services.pricing import usable_promo
from vpnshop.services.subscriptions import TrialSettings


@attrs.frozen
class SubscriptionSummary:
    id: int
    plan_code: str | None
    status: SubscriptionStatus
    expires_at: datetime
    days_left: int
    is_trial: bool
    auto_renew: bool

    @classmethod
    def of(cls, sub: Subscription, now: datetime) -> SubscriptionSummary:
        assert sub.id is not None
        return cls(
            id=sub.id,
            plan_code=sub.plan_code,
            status=sub.status(now),
            expires_at=sub.expires_at,
            days_left=sub.days_left(now),
            is_trial=sub.is_trial,
            auto_renew=sub.auto_renew,
        )


@attrs.frozen
class KeptDiscount:
    """A discount code the customer typed in, still usable by them: their next purchase
    gets ``percent`` off (where the code's plan and minimum allow)."""

    code: str
    percent: int


@attrs.frozen
class Home:
    """``subscriptions`` newest first (one today; the menu must not assume it).
    ``balances`` lists every currency the customer has held, zero ones included."""

    customer_id: int
    language: str
    subscriptions: tuple[SubscriptionSummary, ...]
    trial_available: bool
    balances: tuple[Money, ...]
    discount: KeptDiscount | None = None

    @property
    def subscription(self) -> SubscriptionSummary | None:
        return self.subscriptions[0] if self.subscriptions else None

    def balance(self, cur: Currency) -> Money:
        return next((m for m in self.balances if m.currency == cur), Money.zero(cur))


@attrs.frozen
class GetHome:
    """The customer's subscriptions (status, expiry, days left, auto-renewal), whether the
    free trial is on offer (switched on and never taken), balances and language."""

    deps: Deps
    trial: TrialSettings = attrs.field(factory=TrialSettings)

    async def __call__(self, customer_id: int) -> Home:
        now = self.deps.now()

        async def read(uow: UnitOfWork) -> Home:
            customer = await uow.customers.get(customer_id)
            if customer is None:
                raise NotFoundError(f"customer {customer_id}")
            subs = await uow.subscriptions.for_customer(customer_id)
            trial_used = await uow.trials.used(customer_id)
            balances = await uow.ledger.balances(customer_id)
            discount = None
            if customer.discount_code is not None:
                try:  # the same test pricing applies: a spent or expired code is not shown
                    promo = await usable_promo(uow, customer.discount_code, customer_id, now)
                    discount = KeptDiscount(promo.code, promo.value)
                except PromoError:
                    discount = None
            return Home(
                customer_id=customer_id,
                language=customer.language,
                subscriptions=tuple(SubscriptionSummary.of(s, now) for s in subs),
                trial_available=self.trial.enabled and not trial_used,
                balances=tuple(balances),
                discount=discount,
            )

        # Every menu screen comes here: the whole read in one trip to the store.
        return await self.deps.run_read(read)
