"""Fixtures shared by every test: databases (SQLite, PostgreSQL, memory), clocks, ids.

PostgreSQL is real: one throwaway cluster per test session on 127.0.0.1, a migrated
template database, and a fresh copy of it per test. Where no PostgreSQL server binaries
exist, PostgreSQL tests are skipped on a developer machine, but fail under CI (``CI`` set)
or with ``VPNSHOP_REQUIRE_POSTGRES=1``: CI must never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.migrate import upgrade
from vpnshop.bootstrap import Storage, open_engine, open_storage
from vpnshop.testing.pgcluster import PostgresCluster, PostgresUnavailableError
from vpnshop.testing.redisserver import RedisServer, RedisUnavailableError

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_db_numbers = itertools.count(1)
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* to completion from sync code, even when called inside a running loop
    (session fixtures are created lazily from async fixtures)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _postgres_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("VPNSHOP_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailableError as e:
        if _postgres_required():
            pytest.fail(f"PostgreSQL is required here but unavailable: {e}")
        pytest.skip(f"PostgreSQL unavailable: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _redis_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("VPNSHOP_REQUIRE_REDIS") == "1"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server for the session (skipped where Redis is not installed,
    except under CI or VPNSHOP_REQUIRE_REDIS=1, where that fails)."""
    try:
        server = RedisServer().start()
    except RedisUnavailableError as e:
        if _redis_required():
            pytest.fail(f"Redis is required here but unavailable: {e}")
        pytest.skip(f"Redis unavailable: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis database of the throwaway server, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """A migrated database that each test's database is copied from."""
    name = "vpnshop_template"
    pg_cluster.create_database(name)

    async def migrate() -> None:
        engine = create_engine(pg_cluster.sqlalchemy_url(name))
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_async(migrate())
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_async(migrate())
    return path


def make_database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A fresh, migrated, empty database of *backend* for one test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "vpnshop.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        template_name: str = request.getfixturevalue("pg_template")
        name = f"t{os.getpid()}_{next(_db_numbers)}"
        cluster.create_database(name, template=template_name)
        return cluster.sqlalchemy_url(name)
    raise ValueError(backend)


@pytest.fixture(params=SQL_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_database_url(request, request.param, tmp_path)


@pytest.fixture(params=BACKENDS)
async def uow_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A fresh store of each backend, opened as bootstrap opens it: calling it opens a
    unit of work; on SQL it also carries the store's group-committing payment settler."""
    if request.param == "memory":
        from vpnshop.testing.memory import MemoryStore, memory_uow_factory

        yield Storage(memory_uow_factory(MemoryStore()))
        return
    async with sql_storage(make_database_url(request, request.param, tmp_path)) as storage:
        yield storage


@asynccontextmanager
async def sql_storage(url: str) -> AsyncIterator[Storage]:
    """The SQL store at *url* with its settler, closed on exit (through the composition
    root, as every process opens it)."""
    async with AsyncExitStack() as stack:
        yield open_storage(open_engine(url, stack, pool_size=20), stack)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
