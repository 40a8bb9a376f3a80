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
from vpnshop.ports.storage import StorageUnavailableError
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
