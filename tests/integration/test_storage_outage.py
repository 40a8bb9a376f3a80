"""A database that goes away is reported as StorageUnavailableError, not a driver error,
by the units of work and by the payment settlers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.settle_pg_batch import PgPaymentSettler
from vpnshop.adapters.storage.settle_sqlite import SqlitePaymentSettler
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.ports.settlement import Confirmation
from vpnshop.ports.storage import StorageUnavailableError
from vpnshop.testing.pgcluster import PostgresCluster


@pytest.mark.postgres
async def test_postgres_going_away_is_storage_unavailable(
    pg_cluster: PostgresCluster, pg_template: str
) -> None:
    """Connections lost mid-work, and connections refused, raise StorageUnavailableError."""
    pg_cluster.create_database("outage", template="vpnshop_template")
    engine = create_engine(pg_cluster.sqlalchemy_url("outage"))
    try:
        async with SqlAlchemyUnitOfWork(engine) as uow:
            assert await uow.customers.count() == 0  # a working connection first
            pg_cluster.terminate_connections("outage")
            with pytest.raises(StorageUnavailableError):
                await uow.customers.count()
    finally:
        await engine.dispose()
    refused = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(StorageUnavailableError):
            async with SqlAlchemyUnitOfWork(refused):
                pass
    finally:
        await refused.dispose()


@pytest.mark.postgres
async def test_cancelling_a_statement_is_a_cancellation_not_an_outage(
    pg_cluster: PostgresCluster, pg_template: str
) -> None:
    """A task cancelled while its statement runs (a timeout, a shutdown) sees
    CancelledError: the engine's outage translation must not turn it into
    StorageUnavailableError, which callers answer with 503 and carry on."""
    pg_cluster.create_database("cancelled", template="vpnshop_template")
    engine = create_engine(pg_cluster.sqlalchemy_url("cancelled"))
    try:

        async def slow() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(30)"))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)  # the statement is running on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        async with SqlAlchemyUnitOfWork(engine) as uow:  # the pool still works
            assert await uow.customers.count() == 0
    finally:
        await engine.dispose()


def _confirmation() -> Confirmation:
    return Confirmation(
        provider="fake",
        amount=Money(100, RUB),
        payment_id="no-such-payment",
        external_id=None,
        saved_method_id=None,
        actor=Actor.provider("fake"),
        referral_reward_percent=0,
    )


@pytest.mark.postgres
async def test_the_postgres_settler_reports_an_outage_as_storage_unavailable(
    pg_cluster: PostgresCluster, pg_template: str
) -> None:
    """The group-committing settler, refused or cut off, raises StorageUnavailableError
    (the webhook server's 503), and works again once the database is back."""
    refused = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    settler = PgPaymentSettler(refused)
    try:
        with pytest.raises(StorageUnavailableError):
            await settler.confirm(_confirmation(), datetime.now(UTC))
    finally:
        await settler.aclose()
        await refused.dispose()

    pg_cluster.create_database("settler_outage", template="vpnshop_template")
    engine = create_engine(pg_cluster.sqlalchemy_url("settler_outage"))
    settler = PgPaymentSettler(engine)
    try:
        assert await settler.confirm(_confirmation(), datetime.now(UTC)) is None
        pg_cluster.terminate_connections("settler_outage")
        with pytest.raises(StorageUnavailableError):
            await settler.confirm(_confirmation(), datetime.now(UTC))
        assert await settler.confirm(_confirmation(), datetime.now(UTC)) is None
    finally:
        await settler.aclose()
        await engine.dispose()


async def test_the_sqlite_settler_reports_an_unusable_file_as_storage_unavailable(
    tmp_path: Path,
) -> None:
    """A database file that cannot be opened is StorageUnavailableError, not a driver
    error."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'vpnshop.db'}")
    settler = SqlitePaymentSettler(engine)
    try:
        with pytest.raises(StorageUnavailableError):
            await settler.confirm(_confirmation(), datetime.now(UTC))
    finally:
        await settler.aclose()
        await engine.dispose()
