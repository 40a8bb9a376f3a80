"""Keeping the panel a projection of the shop: the "apply subscription" outbox job."""

from __future__ import annotations

import attrs

from vpnshop.domain.errors import NotFoundError
from vpnshop.domain.outbox import OutboxJob
from vpnshop.domain.panel import PanelAccess, render_username
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.panel import VpnPanel
from vpnshop.services.deps import Deps


@attrs.frozen
class PanelNaming:
    """How shop subscriptions are named on the panel.

    ``{subscription_id}`` makes every username unique per shop subscription; the result
    must match the panel's ``^[a-zA-Z0-9_-]{3,36}$``, which ``vpnshop check`` verifies.
    """

    username_template: str = "vs_{subscription_id}"
    description_template: str = "vpnshop customer {customer_id}"

    def username(self, sub: Subscription) -> str:
        assert sub.id is not None, "a subscription is named once it is stored"
        return render_username(self.username_template, sub.id, sub.customer_id)


@attrs.frozen
class ApplySubscription:
    """Make the panel user match one subscription. Safe to run any number of times: it
    reads the subscription as it is now and sends absolute values."""

    deps: Deps
    panel: VpnPanel
    naming: PanelNaming = attrs.field(factory=PanelNaming)

    async def __call__(self, subscription_id: int) -> None:
        async with self.deps.uow() as uow:
            sub = await uow.subscriptions.get(subscription_id)
            if sub is None:
                raise NotFoundError(f"subscription {subscription_id}")
            customer = await uow.customers.get(sub.customer_id)
            if customer is None:
                raise NotFoundError(f"customer {sub.customer_id}")
        access = PanelAccess(
            username=sub.panel_username or self.naming.username(sub),
            expires_at=sub.expires_at,
            key=sub.panel_key,
            enabled=sub.enabled and not customer.banned and not customer.is_deleted,
            traffic_limit_bytes=sub.traffic_limit_bytes,
            traffic_reset=sub.traffic_reset,
            device_limit=sub.device_limit,
            internal_squads=sub.squads,
            description=self.naming.description_template.format(
                customer_id=customer.id, subscription_id=sub.id
            ),
            telegram_id=customer.telegram_id,
            fresh=sub.panel_key is None and sub.panel_username is None,
        )
        user = await self.panel.apply(access)
        if (user.key, user.username, user.subscription_url) != (
            sub.panel_key,
            sub.panel_username,
            sub.subscription_url,
        ):
            async with self.deps.uow() as uow:
                await uow.subscriptions.set_panel_link(
                    subscription_id,
                    panel_key=user.key,
                    panel_username=user.username,
                    subscription_url=user.subscription_url,
                )
                await uow.commit()

    async def handle(self, job: OutboxJob) -> None:
        sub_id = job.payload.get("subscription_id")
        if not isinstance(sub_id, int):
            raise NotFoundError(f"job {job.id} names no subscription")
        await self(sub_id)
