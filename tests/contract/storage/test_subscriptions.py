"""The subscriptions repository, and the trial claimed once ever."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import attrs
import pytest

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
    new_plan,
)
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.plan import GIB, TrafficReset
from vpnshop.domain.subscription import Subscription


async def test_subscription_round_trips_every_field(uow_factory: Factory) -> None:
    """A subscription comes back with a store-assigned id and every field as stored."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    wanted = Subscription(
        id=None,
        customer_id=customer.id,
        plan_code="month",
        expires_at=T0 + timedelta(days=30, microseconds=1),
        traffic_limit_bytes=50 * GIB,
        traffic_reset=TrafficReset.WEEK,
        device_limit=2,
        squads=("sq-1", "sq-2"),
        is_trial=True,
        enabled=False,
        auto_renew=True,
        panel_key="42",
        panel_username="vpn_42",
        subscription_url="https://panel.example/sub/abc",
        created_at=T0,
        updated_at=T0 + timedelta(hours=1),
    )
    async with uow_factory() as uow:
        await uow.plans.upsert(new_plan())
        stored = await uow.subscriptions.add(wanted)
        await uow.commit()
    assert isinstance(stored.id, int)
    assert stored == attrs.evolve(wanted, id=stored.id)
    async with uow_factory() as uow:
        assert await uow.subscriptions.get(stored.id) == stored
        assert await uow.subscriptions.get(stored.id, for_update=True) == stored
        assert await uow.subscriptions.get(stored.id + 1000) is None


async def test_one_subscription_per_customer_and_update(uow_factory: Factory) -> None:
    """A customer has at most one subscription (a second add is a conflict that changes
    nothing); for_customer() lists only that customer's; update() sticks."""
    alice = await add_customer(uow_factory)
    bob = await add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    async with uow_factory() as uow:
        first = await uow.subscriptions.add(Subscription.new(alice.id, T0).extended(3, T0))
        await uow.subscriptions.add(attrs.evolve(Subscription.new(bob.id, T0), updated_at=T0))
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(ConflictError):
            await uow.subscriptions.add(Subscription.new(alice.id, T0).extended(9, T0))
    extended = first.extended(30, T0 + timedelta(hours=2))
    async with uow_factory() as uow:
        await uow.subscriptions.update(extended)
        await uow.commit()
    async with uow_factory() as uow:
        mine = await uow.subscriptions.for_customer(alice.id)
        assert await uow.subscriptions.for_customer(alice.id + bob.id + 1000) == []
    assert mine == [extended]


async def test_set_panel_link_touches_only_the_link(uow_factory: Factory) -> None:
    """set_panel_link() records the panel user and keeps every other field as stored."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        sub = await uow.subscriptions.add(
            attrs.evolve(Subscription.new(customer.id, T0).extended(30, T0), auto_renew=True)
        )
        await uow.commit()
    assert sub.id is not None
    extended = sub.extended(7, T0 + timedelta(minutes=1))
    async with uow_factory() as uow:
        await uow.subscriptions.update(extended)
        await uow.subscriptions.set_panel_link(
            sub.id,
            panel_key="77",
            panel_username="vpn_77",
            subscription_url="https://panel.example/sub/77",
        )
        await uow.commit()
    async with uow_factory() as uow:
        stored = await uow.subscriptions.get(sub.id)
    assert stored == attrs.evolve(
        extended,
        panel_key="77",
        panel_username="vpn_77",
        subscription_url="https://panel.example/sub/77",
    )


async def test_expiring_between_is_half_open_and_ordered(uow_factory: Factory) -> None:
    """expiring_between(start, end) returns start <= expires_at < end, soonest first."""
    offsets = [timedelta(hours=h) for h in (5, 0, 24, 12, -1, 25)]
    for offset in offsets:
        customer = await add_customer(uow_factory)
        assert customer.id is not None
        async with uow_factory() as uow:
            await uow.subscriptions.add(
                Subscription(
                    id=None,
                    customer_id=customer.id,
                    plan_code=None,
                    expires_at=T0 + offset,
                    created_at=T0,
                    updated_at=T0,
                )
            )
            await uow.commit()
    async with uow_factory() as uow:
        found = await uow.subscriptions.expiring_between(T0, T0 + timedelta(hours=24))
    assert [s.expires_at - T0 for s in found] == [timedelta(hours=h) for h in (0, 5, 12)]


async def test_trial_is_claimed_once_until_reset(uow_factory: Factory) -> None:
    """claim() is True once per customer; reset() gives the trial back."""
    alice = await add_customer(uow_factory)
    bob = await add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    async with uow_factory() as uow:
        assert await uow.trials.claim(alice.id, T0) is True
        assert await uow.trials.claim(alice.id, T0) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.trials.claim(alice.id, T0) is False
        assert await uow.trials.claim(bob.id, T0) is True
        await uow.trials.reset(alice.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.trials.claim(alice.id, T0) is True
        assert await uow.trials.claim(bob.id, T0) is False


async def test_uncommitted_trial_claim_is_forgotten(uow_factory: Factory) -> None:
    """A claim in a rolled-back unit of work does not use up the trial."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        assert await uow.trials.claim(customer.id, T0) is True
    async with uow_factory() as uow:
        assert await uow.trials.claim(customer.id, T0) is True


async def test_concurrent_trial_claims_grant_one(uow_factory: Factory) -> None:
    """Of 20 concurrent trial claims by one customer exactly one is granted."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    customer_id = customer.id

    async def claim() -> bool:
        async with uow_factory() as uow:
            ok = await uow.trials.claim(customer_id, T0)
            await uow.commit()
            return ok

    results = await asyncio.gather(*(claim() for _ in range(20)))
    assert results.count(True) == 1
