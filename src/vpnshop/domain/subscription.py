"""Subscriptions: the paid (or trial) time a customer has on the panel."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs

from vpnshop.domain.errors import ValidationError
from vpnshop.domain.plan import Plan, TrafficReset


class SubscriptionStatus(enum.StrEnum):
    """What a customer is told: running, past its expiry, or switched off."""

    ACTIVE = "active"
    EXPIRED = "expired"
    DISABLED = "disabled"


@attrs.frozen
class Subscription:
    """Access to the VPN until ``expires_at``; the panel user is a projection of it."""

    id: int | None
    customer_id: int
    plan_code: str | None
    expires_at: datetime
    traffic_limit_bytes: int = 0
    traffic_reset: TrafficReset = TrafficReset.NO_RESET
    device_limit: int | None = None
    squads: tuple[str, ...] = ()
    is_trial: bool = False
    enabled: bool = True
    auto_renew: bool = False
    panel_key: str | None = None
    panel_username: str | None = None
    subscription_url: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.enabled and self.expires_at > now

    def status(self, now: datetime) -> SubscriptionStatus:
        if not self.enabled:
            return SubscriptionStatus.DISABLED
        return SubscriptionStatus.ACTIVE if self.expires_at > now else SubscriptionStatus.EXPIRED

    def time_left(self, now: datetime) -> timedelta:
        return max(self.expires_at - now, timedelta(0))

    def days_left(self, now: datetime) -> int:
        return self.time_left(now).days

    def extended(self, days: int, now: datetime) -> Subscription:
        """*days* more, counted from expiry or from now, whichever is later.

        Renewing early never loses days; renewing late never back-dates.
        """
        if days <= 0:
            raise ValidationError("a subscription is extended by a positive number of days")
        start = max(self.expires_at, now)
        return attrs.evolve(self, expires_at=start + timedelta(days=days), updated_at=now)

    def shortened(self, days: int, now: datetime) -> Subscription:
        """*days* fewer (a refund); expiry never moves before now."""
        if days <= 0:
            raise ValidationError("a subscription is shortened by a positive number of days")
        return attrs.evolve(
            self, expires_at=max(self.expires_at - timedelta(days=days), now), updated_at=now
        )

    def with_plan(self, plan: Plan) -> Subscription:
        """Take the plan's limits and squads (a purchase of another plan switches)."""
        return attrs.evolve(
            self,
            plan_code=plan.code,
            traffic_limit_bytes=plan.traffic_limit_bytes,
            traffic_reset=plan.traffic_reset,
            device_limit=plan.device_limit,
            squads=plan.squads,
            is_trial=False,
        )

    @classmethod
    def new(cls, customer_id: int, now: datetime, plan: Plan | None = None) -> Subscription:
        """A subscription that has not started yet: expiry now, to be extended."""
        sub = cls(id=None, customer_id=customer_id, plan_code=None, expires_at=now, created_at=now)
        return sub.with_plan(plan) if plan is not None else sub


def extend_or_start(
    existing: Subscription | None,
    customer_id: int,
    days: int,
    plan: Plan | None,
    now: datetime,
) -> Subscription:
    """The customer's subscription after buying *days* (of *plan*, whose limits it takes).

    The one rule every purchase, gift and bonus follows: extend the existing subscription
    from max(now, expiry), or start one now; it is enabled afterwards.
    """
    sub = existing if existing is not None else Subscription.new(customer_id, now)
    if plan is not None:
        sub = sub.with_plan(plan)
    return attrs.evolve(sub.extended(days, now), enabled=True)
