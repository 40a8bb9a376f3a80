"""The "my subscription" screen: what the store knows, what the panel says (usage, devices), and
the two things a customer may do there (remove a device, revoke the link).

Every use case takes the customer and the subscription id and refuses a subscription
that is not the customer's, so that several subscriptions per customer need no rework.
The store's view never depends on the panel: a panel that is down leaves the details
without live usage (the cached webhook view stands in), and makes the panel actions raise
PanelUnavailableError, which the bot shows as "try again later".
"""

from __future__ import annotations

import asyncio
import enum
import logging
from datetime import datetime

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import (
    SubscriptionNotFoundError,
    SubscriptionNotReadyError,
    ValidationError,
)
from vpnshop.domain.panel import PanelDevice, PanelUser, PanelUserView
from vpnshop.domain.subscription import Subscription, SubscriptionStatus
from vpnshop.ports.panel import (
    PanelError,
    PanelNotFoundError,
    PanelUnavailableError,
    VpnPanel,
)
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps, record

log = logging.getLogger(__name__)

MAX_HWID = 256  # far above any real device id; a longer one is not from the panel


async def owned_subscription(
    uow: UnitOfWork, customer_id: int, subscription_id: int
) -> Subscription:
    """The subscription, if it is this customer's; SubscriptionNotFoundError otherwise
    (the same for an unknown id and another customer's, which is never revealed)."""
    sub = await uow.subscriptions.get(subscription_id)
    if sub is None or sub.customer_id != customer_id:
        raise SubscriptionNotFoundError(
            f"customer {customer_id} has no subscription {subscription_id}"
        )
    return sub


class PanelState(enum.StrEnum):
    LIVE = "live"  # usage and devices as the panel says now
    PENDING = "pending"  # no panel user yet: the outbox is creating it, the link follows
    UNAVAILABLE = "unavailable"  # the panel did not answer; usage from the cached view


@attrs.frozen
class Usage:
    used_traffic_bytes: int
    traffic_limit_bytes: int  # 0 = unlimited
    online_at: datetime | None = None


@attrs.frozen
class SubscriptionDetails:
    id: int
    plan_code: str | None
    status: SubscriptionStatus
    expires_at: datetime
    days_left: int
    is_trial: bool
    auto_renew: bool
    device_limit: int | None
    link: str | None
    panel: PanelState
    usage: Usage | None = None
    devices: tuple[PanelDevice, ...] | None = None  # None when the panel did not say


@attrs.frozen
class GetSubscriptionDetails:
    """The store's view of one of the customer's subscriptions, with live usage and
    devices from the panel when it answers (any panel error leaves the store's view,
    marked UNAVAILABLE, with the usage the panel's webhooks last reported)."""

    deps: Deps
    panel: VpnPanel | None

    async def __call__(
        self, customer_id: int, subscription_id: int | None, *, devices: bool = True
    ) -> SubscriptionDetails:
        """With *devices* False the panel is asked for the user only (a screen that shows
        no device list needs one panel call). *subscription_id* None: the customer's
        newest (the menu's "My subscription"), SubscriptionNotFoundError if they have
        none; found in the same read as the rest."""
        now = self.deps.now()

        async def read(uow: UnitOfWork) -> tuple[Subscription, PanelUserView | None]:
            if subscription_id is None:
                subs = await uow.subscriptions.for_customer(customer_id)
                if not subs:
                    raise SubscriptionNotFoundError(f"customer {customer_id} has none")
                sub = subs[0]
            else:
                sub = await owned_subscription(uow, customer_id, subscription_id)
            assert sub.id is not None
            return sub, await uow.panel_users.get(sub.id)

        sub, cached = await self.deps.run_read(read)
        assert sub.id is not None
        base = SubscriptionDetails(
            id=sub.id,
            plan_code=sub.plan_code,
            status=sub.status(now),
            expires_at=sub.expires_at,
            days_left=sub.days_left(now),
            is_trial=sub.is_trial,
            auto_renew=sub.auto_renew,
            device_limit=sub.device_limit,
            link=sub.subscription_url,
            panel=PanelState.PENDING,
            usage=_cached_usage(cached, sub),
        )
        if sub.panel_key is None:
            return base
        if self.panel is None:
            return attrs.evolve(base, panel=PanelState.UNAVAILABLE)
        key = sub.panel_key
        # Both panel calls at once: the customer waits for one round trip, not two.
        calls = [self.panel.get(key), *([self.panel.devices(key)] if devices else [])]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        for answer in answers:
            if isinstance(answer, PanelNotFoundError):
                break  # deleted on the panel: the next apply job recreates it
            if isinstance(answer, PanelError):  # down, or refusing: the store view stands
                log.warning("panel view of subscription %s unavailable: %s", sub.id, answer)
                return attrs.evolve(base, panel=PanelState.UNAVAILABLE)
            if isinstance(answer, BaseException):
                raise answer  # our bug: the error handler reports it
        user = answers[0]
        if user is None or isinstance(user, BaseException):
            return attrs.evolve(base, panel=PanelState.PENDING)
        assert isinstance(user, PanelUser)
        found = answers[1] if devices else None
        return attrs.evolve(
            base,
            panel=PanelState.LIVE,
            link=user.subscription_url or sub.subscription_url,
            usage=Usage(user.used_traffic_bytes, sub.traffic_limit_bytes, user.online_at),
            devices=tuple(found) if isinstance(found, list) else None,
        )


def _cached_usage(view: PanelUserView | None, sub: Subscription) -> Usage | None:
    if view is None:
        return None
    return Usage(view.used_traffic_bytes, sub.traffic_limit_bytes, view.online_at)


async def _panel_key(deps: Deps, customer_id: int, subscription_id: int) -> tuple[str, Actor]:
    """The panel key of the customer's subscription, and the customer as an actor."""
    async with deps.uow() as uow:
        sub = await owned_subscription(uow, customer_id, subscription_id)
        customer = await uow.customers.get(customer_id)
    if sub.panel_key is None:
        raise SubscriptionNotReadyError(f"subscription {subscription_id} has no panel user yet")
    assert customer is not None  # a subscription's customer exists (foreign key)
    return sub.panel_key, Actor.customer(customer.telegram_id)


@attrs.frozen
class RemoveDevice:
    """Forget one of the subscription's devices (HWID) on the panel; returns the devices
    left. Removing a device that is not there changes nothing."""

    deps: Deps
    panel: VpnPanel | None

    async def __call__(
        self, customer_id: int, subscription_id: int, hwid: str
    ) -> tuple[PanelDevice, ...]:
        if not hwid or len(hwid) > MAX_HWID:
            raise ValidationError(f"a device id is 1 to {MAX_HWID} characters")
        key, actor = await _panel_key(self.deps, customer_id, subscription_id)
        remaining = await _require(self.panel).remove_device(key, hwid)
        async with self.deps.uow() as uow:
            await record(
                uow,
                self.deps.now(),
                actor,
                "subscription.device_remove",
                f"subscription:{subscription_id}",
                hwid=hwid,
            )
            await uow.commit()
        return tuple(remaining)


@attrs.frozen
class RevokeLink:
    """Issue a new subscription link on the panel (the old one stops working), store it,
    and return it."""

    deps: Deps
    panel: VpnPanel | None

    async def __call__(self, customer_id: int, subscription_id: int) -> str:
        key, actor = await _panel_key(self.deps, customer_id, subscription_id)
        user = await _require(self.panel).revoke(key)
        async with self.deps.uow() as uow:
            # Only the link fields: a concurrent extension keeps its days.
            await uow.subscriptions.set_panel_link(
                subscription_id,
                panel_key=user.key,
                panel_username=user.username,
                subscription_url=user.subscription_url,
            )
            await record(
                uow,
                self.deps.now(),
                actor,
                "subscription.revoke",
                f"subscription:{subscription_id}",
            )
            await uow.commit()
        return user.subscription_url


def _require(panel: VpnPanel | None) -> VpnPanel:
    if panel is None:
        raise PanelUnavailableError("no panel is configured")
    return panel
