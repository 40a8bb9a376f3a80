"""Panel drift: the panel should be a projection of the shop; find where it is not.

Every subscription is compared with the panel user the shop owns for it (a user carrying
the shop's tag). A missing user, or one whose expiry, traffic limit, device limit or
enabled state differs, becomes an "apply subscription" outbox job, which makes the user
match again. Users the shop does not own (without its tag) are counted and reported,
never changed; so are the shop's users that no subscription refers to (orphans).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from vpnshop.domain.outbox import JobKind
from vpnshop.domain.panel import PanelStatus, PanelUser
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.panel import VpnPanel
from vpnshop.services.deps import Deps, enqueue

log = logging.getLogger(__name__)

PAGE = 500  # panel users per request (the API allows up to 1000)
SLACK = timedelta(seconds=2)  # expiry differences below this are rounding, not drift


@attrs.frozen
class DriftReport:
    subscriptions: int = 0
    panel_users: int = 0
    missing: int = 0  # active subscriptions without their panel user
    differing: int = 0  # panel users that do not match their subscription
    enqueued: int = 0  # apply jobs added for the two above
    not_owned: int = 0  # subscriptions whose panel user lost the shop's tag: reported
    orphans: tuple[str, ...] = ()  # the shop's users no subscription refers to: reported
    foreign: int = 0  # panel users without the shop's tag: never touched


def differs(sub: Subscription, user: PanelUser, now: datetime) -> str | None:
    """Why *user* does not match *sub*, or None.

    A subscription that is not active (expired or disabled) only needs its user not to
    be active: the adapter applies it as disabled and leaves the panel's expiry alone.
    An active one's user is not checked for being enabled: a banned customer's user is
    disabled on purpose."""
    if not sub.is_active(now):
        return "active on the panel" if user.status is PanelStatus.ACTIVE else None
    if abs(user.expires_at - sub.expires_at) > SLACK:
        return "expiry"
    if user.traffic_limit_bytes != sub.traffic_limit_bytes:
        return "traffic limit"
    if user.device_limit != sub.device_limit:
        return "device limit"
    return None


def drift_of(
    sub: Subscription, owned: Mapping[str, PanelUser], foreign: set[str], now: datetime
) -> str | None:
    """What is wrong with *sub*'s panel user: "missing", "not owned", a difference, or
    None when it matches."""
    if sub.panel_key is None:
        # Never applied: a live subscription must have a user; an expired one needs none.
        return "missing" if sub.is_active(now) else None
    user = owned.get(sub.panel_key)
    if user is None:
        if sub.panel_key in foreign:
            return "not owned"
        return "missing" if sub.is_active(now) else None
    return differs(sub, user, now)


@attrs.frozen
class CheckPanelDrift:
    deps: Deps
    panel: VpnPanel
    tag: str

    async def __call__(self) -> DriftReport:
        owned, foreign, total = await self._panel_users()
        now = self.deps.now()
        stamp = now.strftime("%Y%m%dT%H%M%S")
        seen_keys: set[str] = set()
        subs = missing = differing = enqueued = not_owned = 0
        after = 0
        while True:
            async with self.deps.uow() as uow:
                page = await uow.subscriptions.page(after, PAGE)
            if not page:
                break
            after = page[-1].id or after
            todo: list[tuple[int, str]] = []
            for sub in page:
                assert sub.id is not None
                subs += 1
                why = drift_of(sub, owned, foreign, now)
                if sub.panel_key is not None:
                    seen_keys.add(sub.panel_key)
                if why == "not owned":
                    not_owned += 1
                    log.warning(
                        "panel drift: subscription %s: its panel user is not the shop's", sub.id
                    )
                elif why is not None:
                    missing += why == "missing"
                    differing += why != "missing"
                    todo.append((sub.id, why))
            if todo:
                async with self.deps.uow() as uow:
                    for sub_id, why in todo:
                        key = f"apply:{sub_id}:drift:{stamp}"
                        if await enqueue(
                            uow, now, JobKind.APPLY_SUBSCRIPTION, key, subscription_id=sub_id
                        ):
                            enqueued += 1
                            log.info("panel drift: subscription %s: %s; re-applying", sub_id, why)
                    await uow.commit()
                self.deps.kick()
        orphans = tuple(sorted(k for k in owned if k not in seen_keys))
        if orphans:
            log.warning(
                "panel drift: %d shop users without a subscription: %s",
                len(orphans),
                ", ".join(orphans[:20]),
            )
        if foreign:
            log.info(
                "panel drift: %d panel users without the shop's tag (left alone)", len(foreign)
            )
        return DriftReport(
            subs, total, missing, differing, enqueued, not_owned, orphans, len(foreign)
        )

    async def _panel_users(self) -> tuple[dict[str, PanelUser], set[str], int]:
        """The shop's users by key, the keys of everyone else's, and the total."""
        owned: dict[str, PanelUser] = {}
        foreign: set[str] = set()
        start, total = 0, 0
        while True:
            users, total = await self.panel.list_users(start, PAGE)
            for user in users:
                if user.tag == self.tag:
                    owned[user.key] = user
                else:
                    foreign.add(user.key)
            start += len(users)
            if not users or start >= total:
                break
        return owned, foreign, total
