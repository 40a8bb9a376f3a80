"""SQLite's read-only units of work: they read while the one writer holds its
transaction, and they cannot write."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import make_database_url
from vpnshop.adapters.clock import UlidIds
from vpnshop.bootstrap.resources import open_engine, open_storage
from vpnshop.domain.customer import Customer
from vpnshop.ports.storage import StorageUnavailableError, UnitOfWork
from vpnshop.services.deps import Deps
from vpnshop.testing.fakes import FakeClock


async def test_reads_do_not_wait_for_the_writer(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """While a write transaction is open, a reader sees the last committed state at once
    (on the writer's one connection it would wait for the writer's end)."""
    url = make_database_url(request, "sqlite", tmp_path)
    async with AsyncExitStack() as stack:
        storage = open_storage(open_engine(url, stack), stack)
        assert storage.read_uow is not None
        clock = FakeClock(datetime.now(UTC))
        deps = Deps(uow=storage, clock=clock, ids=UlidIds(), read=storage.read_uow)
        async with deps.uow() as writer:
            await writer.customers.get_or_add(
                Customer(id=None, telegram_id=42, language="en", created_at=datetime.now(UTC))
            )
            async with asyncio.timeout(2):
                async with deps.reader() as reader:
                    assert await reader.customers.by_telegram_id(42) is None  # not committed
            await writer.commit()
        async with deps.reader() as reader:
            assert await reader.customers.by_telegram_id(42) is not None


async def test_a_reader_cannot_write(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A write through a read-only unit of work is refused by SQLite itself."""
    url = make_database_url(request, "sqlite", tmp_path)
    async with AsyncExitStack() as stack:
        storage = open_storage(open_engine(url, stack), stack)
        assert storage.read_uow is not None
        async with storage.read_uow() as reader:
            with pytest.raises(StorageUnavailableError, match="readonly"):
                await reader.customers.get_or_add(
                    Customer(id=None, telegram_id=7, language="en", created_at=datetime.now(UTC))
                )


async def test_reads_in_one_hop_return_each_their_own_outcome(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Concurrent ``run_read`` calls (batched on the reader thread) each get their own
    result or error, see committed state only, and do not wait for an open writer."""
    url = make_database_url(request, "sqlite", tmp_path)
    async with AsyncExitStack() as stack:
        storage = open_storage(open_engine(url, stack), stack)
        assert storage.read_runner is not None
        deps = Deps(
            uow=storage,
            clock=FakeClock(datetime.now(UTC)),
            ids=UlidIds(),
            read=storage.read_uow,
            read_runner=storage.read_runner,
        )
        for tid in (1, 2):
            async with deps.uow() as uow:
                await uow.customers.get_or_add(
                    Customer(id=None, telegram_id=tid, language="en", created_at=datetime.now(UTC))
                )
                await uow.commit()

        async def broken(uow: UnitOfWork) -> None:
            raise LookupError("our read failed")

        async with deps.uow() as writer:
            await writer.customers.get_or_add(
                Customer(id=None, telegram_id=3, language="en", created_at=datetime.now(UTC))
            )
            async with asyncio.timeout(5):
                outcomes = await asyncio.gather(
                    *(
                        deps.run_read(lambda uow, t=tid: uow.customers.by_telegram_id(t))
                        for tid in (1, 2, 3)
                    ),
                    deps.run_read(broken),
                    return_exceptions=True,
                )
        one, two, three, error = outcomes
        assert isinstance(one, Customer) and one.telegram_id == 1
        assert isinstance(two, Customer) and two.telegram_id == 2
        assert three is None  # not committed
        assert isinstance(error, LookupError)


async def test_a_read_in_one_hop_may_wait_on_nothing_else(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A read that awaits anything but its unit of work fails with RuntimeError, and a
    commit in it is refused; the reader keeps working after both."""
    url = make_database_url(request, "sqlite", tmp_path)
    async with AsyncExitStack() as stack:
        storage = open_storage(open_engine(url, stack), stack)
        runner = storage.read_runner
        assert runner is not None

        async def sleeps(uow: UnitOfWork) -> None:
            await asyncio.sleep(0)

        async def commits(uow: UnitOfWork) -> None:
            await uow.commit()

        with pytest.raises(RuntimeError, match="may only wait on its unit of work"):
            await runner(sleeps)
        with pytest.raises(RuntimeError, match="cannot commit"):
            await runner(commits)
        assert await runner(lambda uow: uow.customers.by_telegram_id(1)) is None
