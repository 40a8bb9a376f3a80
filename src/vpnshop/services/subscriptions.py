"""Subscription use cases: extend (by an admin, a promo, a payment), and the free trial."""

from __future__ import annotations

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import (
    NotFoundError,
    TrialAlreadyUsedError,
    ValidationError,
)
from vpnshop.domain.plan import Plan, TrafficReset
from vpnshop.domain.settlement import APPLY, Ref
from vpnshop.domain.subscription import Subscription, extend_or_start
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.customers import buyable_customer
from vpnshop.services.deps import Deps, record


async def current_subscription(uow: UnitOfWork, customer_id: int) -> Subscription | None:
    """The customer's subscription (the newest one; the shop keeps one per customer)."""
    subs = await uow.subscriptions.for_customer(customer_id)
    return subs[0] if subs else None


async def extend_in(
    uow: UnitOfWork,
    deps: Deps,
    *,
    customer_id: int,
    days: int,
    plan: Plan | None,
    reason: str,
) -> Subscription:
    """Extend (or start) the customer's subscription in the caller's transaction, and
    enqueue the panel update. *reason* keys the outbox job, so a retry of the same cause
    applies once."""
    now = deps.now()
    await uow.customers.lock(customer_id)  # concurrent extensions must not lose days
    sub = extend_or_start(
        await current_subscription(uow, customer_id), customer_id, days, plan, now
    )
    if sub.id is None:
        sub = await uow.subscriptions.add(sub)
    else:
        await uow.subscriptions.update(sub)
    await uow.outbox.add(APPLY.job({Ref.SUBSCRIPTION: sub.id, Ref.REASON: reason}, now))
    return sub


@attrs.frozen
class ExtendSubscription:
    """Add days to a customer's subscription (admin gift, promo, compensation)."""

    deps: Deps

    async def __call__(
        self,
        customer_id: int,
        days: int,
        *,
        actor: Actor,
        reason: str,
        plan_code: str | None = None,
    ) -> Subscription:
        if days <= 0:
            raise ValidationError("days must be positive")
        async with self.deps.uow() as uow:
            if await uow.customers.get(customer_id) is None:
                raise NotFoundError(f"customer {customer_id}")
            plan = await uow.plans.get(plan_code) if plan_code else None
            if plan_code and plan is None:
                raise NotFoundError(f"plan {plan_code}")
            sub = await extend_in(
                uow, self.deps, customer_id=customer_id, days=days, plan=plan, reason=reason
            )
            await record(
                uow,
                self.deps.now(),
                actor,
                "subscription.extend",
                f"customer:{customer_id}",
                days=days,
                reason=reason,
                expires_at=sub.expires_at.isoformat(),
            )
            await uow.commit()
        self.deps.kick()
        return sub


@attrs.frozen
class TrialSettings:
    days: int = 3
    traffic_limit_bytes: int = 10 * 1024**3
    traffic_reset: TrafficReset = TrafficReset.NO_RESET
    device_limit: int | None = 1
    squads: tuple[str, ...] = ()
    enabled: bool = True


@attrs.frozen
class ActivateTrial:
    """Give the free trial: once per customer, ever, enforced by the database."""

    deps: Deps
    settings: TrialSettings = attrs.field(factory=TrialSettings)

    async def __call__(self, customer_id: int) -> Subscription:
        if not self.settings.enabled:
            raise ValidationError("the free trial is switched off")
        now = self.deps.now()
        async with self.deps.uow() as uow:
            customer = await buyable_customer(
                uow, customer_id, refusal="banned customers get no trial"
            )
            if not await uow.trials.claim(customer_id, now):
                raise TrialAlreadyUsedError("the trial has been used")
            await uow.customers.lock(customer_id)
            sub = await current_subscription(uow, customer_id)
            if sub is None:
                sub = Subscription.new(customer_id, now)
                sub = attrs.evolve(
                    sub,
                    is_trial=True,
                    traffic_limit_bytes=self.settings.traffic_limit_bytes,
                    traffic_reset=self.settings.traffic_reset,
                    device_limit=self.settings.device_limit,
                    squads=self.settings.squads,
                ).extended(self.settings.days, now)
                sub = await uow.subscriptions.add(sub)
            else:  # a paying customer who never tried: the trial's days are added
                sub = sub.extended(self.settings.days, now)
                await uow.subscriptions.update(sub)
            await uow.outbox.add(APPLY.job({Ref.SUBSCRIPTION: sub.id, Ref.REASON: "trial"}, now))
            await record(
                uow,
                now,
                Actor.customer(customer.telegram_id),
                "trial.activate",
                f"customer:{customer_id}",
                days=self.settings.days,
            )
            await uow.commit()
        self.deps.kick()
        return sub
