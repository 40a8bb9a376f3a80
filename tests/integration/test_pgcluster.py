"""The throwaway PostgreSQL cluster that database tests run against."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import asyncpg
import pytest

from vpnshop.testing.pgcluster import PostgresCluster, PostgresUnavailableError

pytestmark = pytest.mark.postgres


def start_cluster() -> PostgresCluster:
    """Start a cluster; skip when PostgreSQL is missing, unless CI requires it."""
    cluster = PostgresCluster()
    try:
        return cluster.start()
    except PostgresUnavailableError as exc:
        if os.environ.get("VPNSHOP_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL is not available: {exc}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    started = start_cluster()
    try:
        yield started
    finally:
        started.stop()


async def test_serves_asyncpg_on_loopback_only_with_test_settings(
    cluster: PostgresCluster,
) -> None:
    """The cluster accepts asyncpg connections on 127.0.0.1, listens nowhere else, and runs
    with durability off."""
    conn = await asyncpg.connect(cluster.dsn())
    try:
        row = await conn.fetchrow(
            "SELECT host(inet_server_addr()) AS addr, current_user AS usr,"
            " current_setting('listen_addresses') AS listen,"
            " current_setting('fsync') AS fsync,"
            " current_setting('max_connections') AS max_conn,"
            " current_setting('server_encoding') AS encoding"
        )
    finally:
        await conn.close()

    assert cluster.dsn() == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    assert dict(row) == {
        "addr": "127.0.0.1",
        "usr": "postgres",
        "listen": "127.0.0.1",
        "fsync": "off",
        "max_conn": "200",
        "encoding": "UTF8",
    }


async def test_create_database_returns_a_dsn_of_a_usable_database(
    cluster: PostgresCluster,
) -> None:
    """create_database makes a new database and returns a DSN that connects to it."""
    dsn = cluster.create_database("pgcluster_created")

    assert dsn == cluster.dsn("pgcluster_created")
    assert cluster.sqlalchemy_url("pgcluster_created") == (
        f"postgresql+asyncpg://postgres@127.0.0.1:{cluster.port}/pgcluster_created"
    )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (n int)")
        await conn.execute("INSERT INTO t VALUES (1), (2)")
        assert await conn.fetchval("SELECT current_database()") == "pgcluster_created"
        assert await conn.fetchval("SELECT sum(n) FROM t") == 3
    finally:
        await conn.close()


async def test_stop_closes_the_port_and_removes_the_data_directory() -> None:
    """After stop() nothing accepts connections on the cluster's port and its files are gone."""
    cluster = start_cluster()
    try:
        port, data_dir = cluster.port, cluster.data_dir
        conn = await asyncpg.connect(cluster.dsn())
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        cluster.stop()

    assert not cluster.running
    assert not data_dir.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    cluster.stop()  # a second stop is harmless
