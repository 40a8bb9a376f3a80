"""``CustomerRepository.get_or_add``: one idempotent get-or-create, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from vpnshop.domain.customer import Customer
from vpnshop.ports.storage import UnitOfWork

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def new(telegram_id: int) -> Customer:
    return Customer(id=None, telegram_id=telegram_id, created_at=NOW)


async def test_get_or_add_stores_once_and_then_finds(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """The first call stores the customer and says so; the next returns the same one."""
    async with uow_factory() as uow:
        first, created = await uow.customers.get_or_add(new(7001))
        await uow.commit()
    assert created and first.id is not None
    async with uow_factory() as uow:
        again, created_again = await uow.customers.get_or_add(new(7001))
        await uow.commit()
    assert (again.id, created_again) == (first.id, False)
    async with uow_factory() as uow:
        assert await uow.customers.count() == 1


async def test_concurrent_get_or_add_gives_one_customer_to_all(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """Twelve concurrent first calls for one Telegram id all succeed with the same customer,
    and exactly one of them stored it."""

    async def attempt() -> tuple[int | None, bool]:
        async with uow_factory() as uow:
            customer, created = await uow.customers.get_or_add(new(7002))
            await asyncio.sleep(0.01)  # hold the transaction open while the others arrive
            await uow.commit()
            return customer.id, created

    results = await asyncio.gather(*(attempt() for _ in range(12)))
    assert len({cid for cid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with uow_factory() as uow:
        assert await uow.customers.count() == 1
