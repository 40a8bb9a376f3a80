"""The customers repository: round trips, unique Telegram ids, and the row lock."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
    new_customer,
)
from vpnshop.domain.errors import ConflictError


async def test_customer_round_trips_every_field(uow_factory: Factory) -> None:
    """A customer comes back with a store-assigned id and every field as stored."""
    referrer = await add_customer(uow_factory)
    wanted = new_customer(
        language="en",
        username="alice",
        referrer_id=referrer.id,
        campaign="spring",
        banned=True,
        deleted_at=T0 + timedelta(days=1, microseconds=123),
        created_at=T0 + timedelta(seconds=5),
    )
    async with uow_factory() as uow:
        stored = await uow.customers.add(wanted)
        await uow.commit()
    assert isinstance(stored.id, int)
    assert stored.id != referrer.id
    assert stored == attrs.evolve(wanted, id=stored.id)
    async with uow_factory() as uow:
        got = await uow.customers.get(stored.id)
        by_tg = await uow.customers.by_telegram_id(wanted.telegram_id)
        assert await uow.customers.count() == 2
        assert await uow.customers.get(stored.id + 1000) is None
        assert await uow.customers.by_telegram_id(1) is None
    assert got == stored
    assert by_tg == stored
    assert got is not None
    assert got.deleted_at is not None
    assert got.deleted_at.utcoffset() == timedelta(0)


async def test_customer_update_round_trips(uow_factory: Factory) -> None:
    """update() replaces the stored customer's fields."""
    customer = await add_customer(uow_factory, username="bob")
    assert customer.id is not None
    changed = attrs.evolve(
        customer.banned_as(True).soft_deleted(T0), username="bobby", language="en", campaign="ads"
    )
    async with uow_factory() as uow:
        await uow.customers.update(changed)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.customers.get(customer.id) == changed


async def test_duplicate_telegram_id_is_a_conflict(uow_factory: Factory) -> None:
    """Adding a second customer with a taken Telegram id raises ConflictError."""
    first = await add_customer(uow_factory)
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.customers.add(new_customer(telegram_id=first.telegram_id))
    async with uow_factory() as uow:
        assert await uow.customers.count() == 1


async def test_update_to_a_taken_telegram_id_is_a_conflict(uow_factory: Factory) -> None:
    """Changing a customer's Telegram id to another customer's raises ConflictError."""
    first = await add_customer(uow_factory)
    second = await add_customer(uow_factory)
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.customers.update(attrs.evolve(second, telegram_id=first.telegram_id))
    async with uow_factory() as uow:
        assert second.id is not None
        assert await uow.customers.get(second.id) == second


async def test_customer_lock_then_change_commits(uow_factory: Factory) -> None:
    """lock() on a customer is allowed inside a transaction and changes nothing by itself."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        await uow.customers.lock(customer.id)
        await uow.customers.update(attrs.evolve(customer, username="locked"))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.customers.lock(customer.id)
        got = await uow.customers.get(customer.id)
    assert got == attrs.evolve(customer, username="locked")
