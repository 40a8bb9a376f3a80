"""'My subscription' on every backend: the store's view with the panel's usage and
devices, device removal, link revocation, ownership, and a panel that is down."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import attrs
import pytest

from tests.integration.journeys import Journeys, make_journeys
from tests.integration.shop import START
from vpnshop.domain.errors import (
    SubscriptionNotFoundError,
    SubscriptionNotReadyError,
    ValidationError,
)
from vpnshop.domain.panel import PanelDevice, PanelStatus, PanelUserView
from vpnshop.domain.subscription import SubscriptionStatus
from vpnshop.ports.panel import PanelUnavailableError
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.my_subscription import PanelState, RemoveDevice

Factory = Callable[[], UnitOfWork]


@pytest.fixture
async def j(uow_factory: Factory) -> Journeys:
    return await make_journeys(uow_factory)


async def trial_on_panel(j: Journeys, telegram_id: int) -> tuple[int, int, str]:
    """A customer with a trial whose panel user exists: (customer, subscription, key)."""
    cid = await j.start(telegram_id)
    sub = await j.shop.trial(cid)
    assert sub.id is not None
    await j.shop.outbox.drain()
    async with j.shop.uow() as uow:
        stored = await uow.subscriptions.get(sub.id)
    assert stored is not None and stored.panel_key is not None
    return cid, sub.id, stored.panel_key


async def test_details_combine_store_and_panel(j: Journeys) -> None:
    """Details give status, expiry, days left, the link, traffic used of the limit and
    the devices as the panel reports them."""
    cid, sub_id, key = await trial_on_panel(j, 4000)
    panel = j.shop.panel
    panel.users[key] = attrs.evolve(panel.users[key], used_traffic_bytes=123456)
    panel.add_device(key, PanelDevice("hw-1", platform="iOS"))
    panel.add_device(key, PanelDevice("hw-2", platform="Android"))
    details = await j.details(cid, sub_id)
    assert details.panel is PanelState.LIVE
    assert details.status is SubscriptionStatus.ACTIVE and details.is_trial
    assert details.expires_at == START + timedelta(days=3) and details.days_left == 3
    assert details.link == panel.users[key].subscription_url
    assert details.usage is not None and details.usage.used_traffic_bytes == 123456
    assert details.usage.traffic_limit_bytes == 10 * 1024**3
    assert details.devices is not None
    assert [d.hwid for d in details.devices] == ["hw-1", "hw-2"]


async def test_details_of_the_newest_when_no_id_is_given(j: Journeys) -> None:
    """Without a subscription id the details are of the customer's newest subscription,
    and a customer without one gets SubscriptionNotFoundError."""
    cid, sub_id, _ = await trial_on_panel(j, 4005)
    details = await j.details(cid, None)
    assert details.id == sub_id and details.panel is PanelState.LIVE
    other = await j.start(4006)
    with pytest.raises(SubscriptionNotFoundError):
        await j.details(other, None)


async def test_details_without_devices_ask_the_panel_once(j: Journeys) -> None:
    """Details without the device list make one panel call and still give live usage."""
    cid, sub_id, key = await trial_on_panel(j, 4010)
    j.shop.panel.calls.clear()
    details = await j.details(cid, sub_id, devices=False)
    assert details.panel is PanelState.LIVE and details.devices is None
    assert details.usage is not None
    assert j.shop.panel.calls == [("get", key)]


async def test_details_when_the_panel_lost_or_disowned_the_user(j: Journeys) -> None:
    """A panel user deleted on the panel reads as pending (the apply job recreates it);
    one the panel no longer lets the shop touch reads as unavailable; both keep the
    store's view."""
    cid, sub_id, key = await trial_on_panel(j, 4011)
    panel = j.shop.panel
    user = panel.users[key]
    panel.users[key] = attrs.evolve(user, tag="SOMEONE_ELSE")
    disowned = await j.details(cid, sub_id)
    assert disowned.panel is PanelState.UNAVAILABLE
    assert disowned.expires_at == START + timedelta(days=3)
    del panel.users[key]
    lost = await j.details(cid, sub_id)
    assert lost.panel is PanelState.PENDING and lost.link == user.subscription_url


async def test_details_while_the_panel_user_is_being_created(j: Journeys) -> None:
    """Before the outbox has created the panel user, details come from the store alone."""
    cid = await j.start(4001)
    sub = await j.shop.trial(cid)
    assert sub.id is not None
    details = await j.details(cid, sub.id)
    assert details.panel is PanelState.PENDING and details.link is None
    assert details.devices is None and details.usage is None
    assert details.expires_at == START + timedelta(days=3)
    assert j.shop.panel.calls == []
    with pytest.raises(SubscriptionNotReadyError):
        await j.revoke(cid, sub.id)


async def test_details_when_the_panel_is_down(j: Journeys) -> None:
    """A panel that is down leaves the store's view, with the cached usage, and makes
    panel actions raise PanelUnavailableError, changing nothing."""
    cid, sub_id, key = await trial_on_panel(j, 4002)
    async with j.shop.uow() as uow:
        link_before = (await uow.subscriptions.get(sub_id)).subscription_url  # type: ignore[union-attr]
        await uow.panel_users.upsert(
            PanelUserView(sub_id, key, PanelStatus.ACTIVE, START, used_traffic_bytes=777)
        )
        await uow.commit()
    j.shop.panel.down = True
    details = await j.details(cid, sub_id)
    assert details.panel is PanelState.UNAVAILABLE
    assert details.link == link_before and details.devices is None
    assert details.usage is not None and details.usage.used_traffic_bytes == 777
    with pytest.raises(PanelUnavailableError):
        await j.revoke(cid, sub_id)
    with pytest.raises(PanelUnavailableError):
        await j.remove_device(cid, sub_id, "hw-1")
    async with j.shop.uow() as uow:
        after = await uow.subscriptions.get(sub_id)
    assert after is not None and after.subscription_url == link_before


async def test_no_panel_configured_is_unavailable(j: Journeys) -> None:
    """A shop without a panel shows the store's view and refuses panel actions politely."""
    cid, sub_id, _ = await trial_on_panel(j, 4003)
    from vpnshop.services.my_subscription import GetSubscriptionDetails

    details = await GetSubscriptionDetails(j.shop.deps, None)(cid, sub_id)
    assert details.panel is PanelState.UNAVAILABLE
    with pytest.raises(PanelUnavailableError):
        await RemoveDevice(j.shop.deps, None)(cid, sub_id, "hw")


async def test_remove_device(j: Journeys) -> None:
    """Removing a device forgets it on the panel, returns the rest, and is audited."""
    cid, sub_id, key = await trial_on_panel(j, 4004)
    j.shop.panel.add_device(key, PanelDevice("hw-a"))
    j.shop.panel.add_device(key, PanelDevice("hw-b"))
    remaining = await j.remove_device(cid, sub_id, "hw-a")
    assert [d.hwid for d in remaining] == ["hw-b"]
    assert [d.hwid for d in j.shop.panel.device_lists[key]] == ["hw-b"]
    assert [d.hwid for d in await j.remove_device(cid, sub_id, "hw-a")] == ["hw-b"]
    for bad in ("", "x" * 257):
        with pytest.raises(ValidationError):
            await j.remove_device(cid, sub_id, bad)
    async with j.shop.uow() as uow:
        actions = [a.action for a in await uow.audit.recent(subject=f"subscription:{sub_id}")]
    assert "subscription.device_remove" in actions


async def test_revoke_returns_and_stores_the_new_link(j: Journeys) -> None:
    """Revoking issues a new link on the panel, stores it and returns it."""
    cid, sub_id, key = await trial_on_panel(j, 4005)
    old = j.shop.panel.users[key].subscription_url
    new = await j.revoke(cid, sub_id)
    assert new != old and new == j.shop.panel.users[key].subscription_url
    async with j.shop.uow() as uow:
        stored = await uow.subscriptions.get(sub_id)
        actions = [a.action for a in await uow.audit.recent(subject=f"subscription:{sub_id}")]
    assert stored is not None and stored.subscription_url == new
    assert stored.expires_at == START + timedelta(days=3)
    assert "subscription.revoke" in actions


async def test_another_customers_subscription_is_refused(j: Journeys) -> None:
    """Every action on a subscription that is not the customer's (or does not exist) is
    refused alike, and the owner's panel user is untouched."""
    owner, sub_id, key = await trial_on_panel(j, 4006)
    intruder = await j.start(4007)
    j.shop.panel.add_device(key, PanelDevice("hw-owner"))
    url = j.shop.panel.users[key].subscription_url
    calls = len(j.shop.panel.calls)
    for target in (sub_id, 999_999):
        with pytest.raises(SubscriptionNotFoundError):
            await j.details(intruder, target)
        with pytest.raises(SubscriptionNotFoundError):
            await j.revoke(intruder, target)
        with pytest.raises(SubscriptionNotFoundError):
            await j.remove_device(intruder, target, "hw-owner")
        with pytest.raises(SubscriptionNotFoundError):
            await j.set_auto_renew(intruder, target, True)
    assert len(j.shop.panel.calls) == calls
    assert j.shop.panel.users[key].subscription_url == url
    assert [d.hwid for d in j.shop.panel.device_lists[key]] == ["hw-owner"]
    assert not (await j.details(owner, sub_id)).auto_renew
