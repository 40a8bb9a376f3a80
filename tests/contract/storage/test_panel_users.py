"""The cached view of each subscription's panel user."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs

from tests.contract.storage.builders import (
    T0,
    add_customer,
)
from vpnshop.domain.panel import PanelStatus, PanelUserView
from vpnshop.domain.plan import GIB
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage import UnitOfWork


async def _add_linked_subscription(uow_factory: Callable[[], Any], key: str, username: str) -> int:
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        sub = await uow.subscriptions.add(Subscription.new(customer.id, T0).extended(30, T0))
        assert sub.id is not None
        await uow.subscriptions.set_panel_link(
            sub.id, panel_key=key, panel_username=username, subscription_url=None
        )
        await uow.commit()
    return sub.id


async def test_panel_user_view_round_trips_and_upsert_replaces(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """upsert() stores every field of the view, a second upsert replaces it, get() reads it."""
    sub_id = await _add_linked_subscription(uow_factory, "41", "vs_41")
    view = PanelUserView(
        subscription_id=sub_id,
        panel_key="41",
        status=PanelStatus.ACTIVE,
        updated_at=T0,
        used_traffic_bytes=5 * GIB,
        lifetime_used_traffic_bytes=7 * GIB,
        traffic_limit_bytes=100 * GIB,
        online_at=T0 - timedelta(minutes=3),
        first_connected_at=T0 - timedelta(days=2),
        devices=2,
        last_event="user.first_connected",
    )
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) is None
        await uow.panel_users.upsert(view)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) == view
    newer = attrs.evolve(
        view,
        status=PanelStatus.LIMITED,
        used_traffic_bytes=100 * GIB,
        online_at=None,
        devices=0,
        last_event="user.limited",
        updated_at=T0 + timedelta(hours=1),
    )
    async with uow_factory() as uow:
        await uow.panel_users.upsert(newer)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) == newer


async def test_panel_user_upsert_without_commit_is_rolled_back(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """A view written in a unit of work that does not commit is not kept."""
    sub_id = await _add_linked_subscription(uow_factory, "42", "vs_42")
    async with uow_factory() as uow:
        await uow.panel_users.upsert(PanelUserView(sub_id, "42", PanelStatus.ACTIVE, updated_at=T0))
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) is None


async def test_find_subscription_by_panel_key_then_username(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """find_subscription() prefers the stored panel key, falls back to the stored username,
    and answers None for a panel user no subscription projects."""
    first = await _add_linked_subscription(uow_factory, "501", "vs_a")
    second = await _add_linked_subscription(uow_factory, "502", "vs_b")
    async with uow_factory() as uow:
        assert await uow.panel_users.find_subscription("501", "vs_b") == first
        assert await uow.panel_users.find_subscription("9999", "vs_b") == second
        assert await uow.panel_users.find_subscription("9999", "someone_else") is None
