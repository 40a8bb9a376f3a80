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
from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer
from vpnshop.domain.ledger import EntryKind, LedgerEntry
from vpnshop.domain.money import Money, currency
from vpnshop.domain.panel import PanelStatus, PanelUserView
from vpnshop.domain.plan import TrafficReset
from vpnshop.domain.subscription import Subscription
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


async def test_prepared_reads_on_the_reader_thread_match_sqlalchemys(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The hot reads the reader thread runs as plain pysqlite SQL (customer, its
    subscriptions, trial, balances, panel view) return exactly what SQLAlchemy returns on
    the writer's connection: dates with their zone, JSON lists, booleans, NULLs."""
    url = make_database_url(request, "sqlite", tmp_path)
    now = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    async with AsyncExitStack() as stack:
        storage = open_storage(open_engine(url, stack), stack)
        assert storage.read_runner is not None
        async with storage() as uow:
            customer, _ = await uow.customers.get_or_add(
                Customer(
                    id=None,
                    telegram_id=5,
                    language="ru",
                    username="<b>x</b>",
                    banned=True,
                    created_at=now,
                )
            )
            assert customer.id is not None
            sub = await uow.subscriptions.add(
                Subscription(
                    id=None,
                    customer_id=customer.id,
                    plan_code=None,
                    expires_at=now,
                    traffic_reset=TrafficReset.MONTH,
                    squads=("a", "b"),
                    is_trial=True,
                    auto_renew=True,
                    panel_key="k",
                    created_at=now,
                )
            )
            assert sub.id is not None
            await uow.trials.claim(customer.id, now)
            for amount in (Money(150, currency("RUB")), Money(7, currency("XTR"))):
                await uow.ledger.post(
                    LedgerEntry(
                        customer_id=customer.id,
                        amount=amount,
                        kind=EntryKind.TOPUP,
                        idempotency_key=f"k-{amount.currency}",
                        actor=Actor.system("test"),
                        created_at=now,
                    )
                )
            await uow.panel_users.upsert(
                PanelUserView(
                    subscription_id=sub.id,
                    panel_key="k",
                    status=PanelStatus.LIMITED,
                    updated_at=now,
                    used_traffic_bytes=10**12,
                    online_at=now,
                )
            )
            await uow.commit()

        async def read(uow: UnitOfWork) -> tuple[object, ...]:
            assert customer.id is not None and sub.id is not None
            return (
                await uow.customers.get(customer.id),
                await uow.customers.get(customer.id + 1),
                await uow.subscriptions.for_customer(customer.id),
                await uow.subscriptions.get(sub.id),
                await uow.trials.used(customer.id),
                await uow.trials.used(customer.id + 1),
                await uow.ledger.balances(customer.id),
                await uow.panel_users.get(sub.id),
            )

        async with storage() as uow:
            expected = await read(uow)
        assert await storage.read_runner(read) == expected
        assert expected[0] == customer and expected[3] == sub and expected[4] is True
