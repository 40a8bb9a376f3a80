"""The unit of work: nothing is kept without commit(), and rollback() discards."""

from __future__ import annotations

import pytest

from tests.contract.storage.builders import (
    Factory,
    new_customer,
)


async def test_changes_without_commit_are_rolled_back(uow_factory: Factory) -> None:
    """Leaving the block without commit() keeps nothing."""
    async with uow_factory() as uow:
        await uow.customers.add(new_customer(telegram_id=111))
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(111) is None
        assert await uow.customers.count() == 0


async def test_an_exception_rolls_back(uow_factory: Factory) -> None:
    """Leaving the block by an exception keeps nothing, and the exception propagates."""

    async def fail() -> None:
        async with uow_factory() as uow:
            await uow.customers.add(new_customer(telegram_id=112))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail()
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(112) is None


async def test_commit_publishes_and_later_changes_need_another_commit(
    uow_factory: Factory,
) -> None:
    """commit() keeps what came before it; changes after it are lost without a new commit."""
    async with uow_factory() as uow:
        await uow.customers.add(new_customer(telegram_id=113))
        await uow.commit()
        await uow.customers.add(new_customer(telegram_id=114))
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(113) is not None
        assert await uow.customers.by_telegram_id(114) is None


async def test_explicit_rollback_discards_and_the_unit_goes_on(uow_factory: Factory) -> None:
    """rollback() discards the changes so far; later changes can still be committed."""
    async with uow_factory() as uow:
        await uow.customers.add(new_customer(telegram_id=115))
        await uow.rollback()
        await uow.customers.add(new_customer(telegram_id=116))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(115) is None
        assert await uow.customers.by_telegram_id(116) is not None
