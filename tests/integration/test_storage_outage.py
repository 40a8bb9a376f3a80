"""A database that goes away is reported as StorageUnavailableError, not a driver error."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
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
            pg_cluster._admin_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'outage' AND pid <> pg_backend_pid()"
            )
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
