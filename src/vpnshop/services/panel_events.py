"""What the shop does with the panel's webhooks: refresh its cached view of the panel
user and tell the customer what happened (through the outbox). It never calls the panel.

A delivery the panel retries has the same ``dedupe_key`` (it is derived from the
signature), and every notification's outbox key is derived from it, so a redelivery
enqueues nothing new.
"""

from __future__ import annotations

import enum
import logging
import string
from datetime import datetime, timedelta
from typing import Any

import attrs

from vpnshop.domain.outbox import JobKind
from vpnshop.domain.panel import PanelUser, PanelUserView
from vpnshop.domain.panel_events import PanelEvent, PanelEventType
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage import UnitOfWork, UnitOfWorkFactory
from vpnshop.services.deps import Deps, enqueue
from vpnshop.services.panel import PanelNaming

log = logging.getLogger(__name__)

#: A warning "expires in N hours" is stale when the shop's expiry is this much later.
RENEWED_MARGIN = timedelta(hours=1)


class PanelEventOutcome(enum.StrEnum):
    HANDLED = "handled"
    IGNORED = "ignored"  # an event the shop has nothing to do with (node.*, service.*...)
    NOT_OURS = "not_ours"  # a panel user that projects no subscription of this shop


@attrs.frozen
class PanelEventResult:
    outcome: PanelEventOutcome
    subscription_id: int | None = None
    notified: tuple[str, ...] = ()  # templates of the notifications enqueued now


def subscription_id_from_username(template: str, username: str) -> int | None:
    """Invert ``PanelNaming.username_template`` (``vs_{subscription_id}`` -> 42 for
    ``vs_42``); None when *username* does not have the template's shape."""
    pos = 0
    sub_id: int | None = None
    parts = list(string.Formatter().parse(template))
    for i, (literal, field, _spec, _conv) in enumerate(parts):
        if not username.startswith(literal, pos):
            return None
        pos += len(literal)
        if field is None:
            continue
        nxt = parts[i + 1][0] if i + 1 < len(parts) else ""
        end = username.find(nxt, pos) if nxt else len(username)
        if end <= pos:
            return None
        digits = username[pos:end]
        if not digits.isdigit() or (len(digits) > 1 and digits.startswith("0")):
            return None
        if field == "subscription_id":
            sub_id = int(digits)
        pos = end
    return sub_id if pos == len(username) else None


@attrs.frozen
class HandlePanelEvent:
    """Apply one verified panel event to the shop. Idempotent per delivery.

    The subscription is found by the panel user's key, else its username as stored when
    the shop applied it, else (only for users carrying the shop tag) by reading the
    subscription id back out of the username template. Events of users the shop does not
    own, and events it has no use for, are accepted and change nothing.
    """

    deps: Deps
    uow: UnitOfWorkFactory
    naming: PanelNaming = attrs.field(factory=PanelNaming)
    shop_tag: str | None = None

    async def __call__(self, event: PanelEvent) -> PanelEventResult:
        user = event.user
        if event.ignored or user is None:
            return PanelEventResult(PanelEventOutcome.IGNORED)
        now = self.deps.now()
        async with self.uow() as uow:
            sub = await self._subscription(uow, user)
            if sub is None or sub.id is None:
                log.info(
                    "panel event %s for panel user %r (%s): not the shop's; ignored",
                    event.name,
                    user.username,
                    user.key,
                )
                return PanelEventResult(PanelEventOutcome.NOT_OURS)
            notified: list[str] = []
            device_is_new = True
            for template, payload in self._notifications(event, user, sub, now):
                added = await enqueue(
                    uow,
                    now,
                    JobKind.NOTIFY_CUSTOMER,
                    f"notify:{event.dedupe_key}:{template}",
                    customer_id=sub.customer_id,
                    subscription_id=sub.id,
                    template=template,
                    **payload,
                )
                if added:
                    notified.append(template)
                elif template == "device_added":
                    device_is_new = False
            await self._refresh(uow, event, user, sub.id, device_is_new)
            if event.type is not PanelEventType.USER_DELETED and (
                user.key,
                user.username,
                user.subscription_url,
            ) != (sub.panel_key, sub.panel_username, sub.subscription_url):
                # A revoke (new link) or a panel upgrade (new key) shows up here first.
                await uow.subscriptions.set_panel_link(
                    sub.id,
                    panel_key=user.key,
                    panel_username=user.username,
                    subscription_url=user.subscription_url,
                )
            await uow.commit()
        if notified:
            self.deps.kick()
        return PanelEventResult(PanelEventOutcome.HANDLED, sub.id, tuple(notified))

    async def _subscription(self, uow: UnitOfWork, user: PanelUser) -> Subscription | None:
        sub_id = await uow.panel_users.find_subscription(user.key, user.username)
        if sub_id is not None:
            # The row lock serialises concurrent deliveries about the same user (the view
            # is read, then written).
            return await uow.subscriptions.get(sub_id, for_update=True)
        if self.shop_tag is None or user.tag != self.shop_tag:
            return None
        # The shop's own user whose link was never stored (the answer to its create was
        # lost): the username says which subscription it is.
        guessed = subscription_id_from_username(self.naming.username_template, user.username)
        if guessed is None:
            return None
        sub = await uow.subscriptions.get(guessed, for_update=True)
        if sub is None or sub.panel_username not in (None, user.username):
            return None
        if self.naming.username(sub) != user.username:
            return None
        return sub

    async def _refresh(
        self,
        uow: UnitOfWork,
        event: PanelEvent,
        user: PanelUser,
        sub_id: int,
        device_is_new: bool,
    ) -> None:
        prev = await uow.panel_users.get(sub_id)
        devices = prev.devices if prev is not None else 0
        same = (
            prev is not None
            and prev.last_event == event.name
            and prev.updated_at == event.occurred_at
        )
        if event.type is PanelEventType.DEVICE_ADDED and device_is_new:
            devices += 1
        elif event.type is PanelEventType.DEVICE_DELETED and not same:
            devices = max(0, devices - 1)
        if prev is not None and (same or prev.updated_at > event.occurred_at):
            # A redelivery, or an older snapshot arriving late: keep the newer fields.
            if devices != prev.devices:
                await uow.panel_users.upsert(attrs.evolve(prev, devices=devices))
            return
        await uow.panel_users.upsert(
            PanelUserView(
                subscription_id=sub_id,
                panel_key=user.key,
                status=user.status,
                used_traffic_bytes=user.used_traffic_bytes,
                lifetime_used_traffic_bytes=user.lifetime_used_traffic_bytes,
                traffic_limit_bytes=user.traffic_limit_bytes,
                online_at=user.online_at,
                first_connected_at=user.first_connected_at,
                devices=devices,
                last_event=event.name[:64],
                updated_at=event.occurred_at,
            )
        )

    @staticmethod
    def _notifications(
        event: PanelEvent, user: PanelUser, sub: Subscription, now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """(template, payload) of each customer notification this event deserves."""
        kind = event.type
        active_in_shop = sub.is_active(now)
        if kind is PanelEventType.USER_EXPIRATION:
            hours = event.expiration_hours
            if hours is None or hours == 0:
                return []
            if hours < 0:
                # The shop already sold more time (the panel has not caught up yet).
                if sub.expires_at > now + timedelta(hours=-hours) + RENEWED_MARGIN:
                    return []
                return [("expiring", {"hours": -hours, "expires_at": sub.expires_at.isoformat()})]
            return [] if active_in_shop else [("expired", {"hours_ago": hours})]
        if kind is PanelEventType.USER_EXPIRED:
            return [] if active_in_shop else [("expired", {"hours_ago": 0})]
        if kind is PanelEventType.USER_LIMITED:
            return [
                (
                    "traffic_limited",
                    {
                        "used_traffic_bytes": user.used_traffic_bytes,
                        "traffic_limit_bytes": user.traffic_limit_bytes,
                    },
                )
            ]
        if kind is PanelEventType.USER_BANDWIDTH_THRESHOLD:
            return [
                (
                    "traffic_threshold",
                    {
                        "percent": event.threshold_percent,
                        "used_traffic_bytes": user.used_traffic_bytes,
                        "traffic_limit_bytes": user.traffic_limit_bytes,
                    },
                )
            ]
        if kind is PanelEventType.USER_FIRST_CONNECTED:
            return [("first_connected", {})]
        if kind is PanelEventType.DEVICE_ADDED and event.device is not None:
            device = event.device
            return [
                (
                    "device_added",
                    {"platform": device.platform, "device_model": device.device_model},
                )
            ]
        if kind is PanelEventType.USER_REVOKED:
            return [("revoked", {"subscription_url": user.subscription_url})]
        if kind is PanelEventType.USER_DISABLED and active_in_shop:
            # Disabled on the panel while the shop says it is paid for: an admin did it.
            return [("disabled", {})]
        return []
