"""The plans repository: idempotent upserts, also when two loads race, and ordering."""

from __future__ import annotations

import asyncio

import attrs

from tests.contract.storage.builders import (
    Factory,
    new_plan,
)
from vpnshop.domain.money import RUB, Money


async def test_plan_upsert_is_idempotent_and_round_trips(uow_factory: Factory) -> None:
    """upsert() is True on insert and on change, False when nothing changed."""
    plan = new_plan()
    async with uow_factory() as uow:
        assert await uow.plans.upsert(plan) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.plans.get("month") == plan
        assert await uow.plans.upsert(plan) is False
        changed = attrs.evolve(plan, prices={"RUB": Money.of("249.00", RUB)}, device_limit=None)
        assert await uow.plans.upsert(changed) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.plans.get("month") == changed
        assert await uow.plans.get("missing") is None


async def test_two_loads_of_a_new_plan_at_once_both_succeed(uow_factory: Factory) -> None:
    """Two transactions upsert the same new plan at once (two replicas loading the plans
    file): neither fails, and the later commit's version is the one stored."""
    first, second = new_plan(), attrs.evolve(new_plan(), device_limit=7)
    first_written = asyncio.Event()

    async def load_first() -> None:
        async with uow_factory() as uow:
            assert await uow.plans.upsert(first) is True
            first_written.set()
            await asyncio.sleep(0.2)  # the second tries its insert against this open row
            await uow.commit()

    async def load_second() -> None:
        await first_written.wait()
        async with uow_factory() as uow:
            assert await uow.plans.upsert(second) is True
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(load_first(), load_second()), 30)
    async with uow_factory() as uow:
        assert await uow.plans.get("month") == second


async def test_plan_list_orders_by_sort_order_then_code(uow_factory: Factory) -> None:
    """list() orders by sort order, then code, and hides inactive plans unless asked."""
    plans = [
        new_plan("year", sort_order=30),
        new_plan("b-month", sort_order=10),
        new_plan("a-month", sort_order=10),
        new_plan("old", sort_order=0, active=False),
        new_plan("week", sort_order=5, traffic_limit_bytes=0, squads=(), device_limit=None),
    ]
    async with uow_factory() as uow:
        for plan in plans:
            await uow.plans.upsert(plan)
        await uow.commit()
    async with uow_factory() as uow:
        active = await uow.plans.list()
        every = await uow.plans.list(active_only=False)
    assert [p.code for p in active] == ["week", "a-month", "b-month", "year"]
    assert [p.code for p in every] == ["old", "week", "a-month", "b-month", "year"]
    assert every[1] == plans[4]
