"""The link right after an activation (trial, purchase): shown at once when the panel
makes the user in time; otherwise promised, and delivered by the outbox."""

from __future__ import annotations

import asyncio
import logging

import attrs

from vpnshop.domain.errors import DomainError
from vpnshop.domain.outbox import JobKind
from vpnshop.ports.panel import PanelError
from vpnshop.services.deps import Deps, enqueue
from vpnshop.services.my_subscription import owned_subscription
from vpnshop.services.outbox import WaitingForSiblingError
from vpnshop.services.panel import ApplySubscription

log = logging.getLogger(__name__)

READY_TEMPLATE = "subscription_ready"


class LinkNotReadyError(DomainError, WaitingForSiblingError):
    """The panel user does not exist yet: the notice waits for its apply job (the outbox
    retries it soon)."""

    code = "link_not_ready"


@attrs.frozen
class ReadyLink:
    """Apply the subscription to the panel now, waiting at most *wait* seconds, and
    return its link. When the panel is down or slow, enqueue the ``subscription_ready``
    notice (once per subscription) and return None: the outbox makes the panel user with
    the activation's own job and then sends the link."""

    deps: Deps
    apply: ApplySubscription | None

    async def __call__(self, customer_id: int, subscription_id: int, *, wait: float) -> str | None:
        if self.apply is not None:
            try:
                await asyncio.wait_for(self.apply(subscription_id), wait)
            except (PanelError, TimeoutError) as e:
                log.info(
                    "subscription %s: panel not ready (%s); the link will follow",
                    subscription_id,
                    e,
                )
        now = self.deps.now()
        async with self.deps.uow() as uow:
            sub = await owned_subscription(uow, customer_id, subscription_id)
            if sub.subscription_url:
                return sub.subscription_url
            await enqueue(
                uow,
                now,
                JobKind.NOTIFY_CUSTOMER,
                f"notify:ready:{subscription_id}",
                customer_id=customer_id,
                subscription_id=subscription_id,
                template=READY_TEMPLATE,
            )
            await uow.commit()
        self.deps.kick()
        return None
