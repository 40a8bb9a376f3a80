"""PostgreSQL as production runs it, for the benchmarks (not a benchmark itself).

The test cluster turns fsync, synchronous_commit and full_page_writes off, which is right
for tests and wrong for a published number: a commit then never waits for the disk. The
benchmarks start their cluster with these settings instead, and print what the server
reports it ran with, so that a number always comes with its conditions.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.testing.pgcluster import PostgresCluster

DURABLE: Mapping[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "replica",  # PostgreSQL's default; the test cluster's "minimal" skips WAL
    "max_wal_senders": "10",
}
SHOWN = ("fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers")


def durable_cluster() -> PostgresCluster:
    """A throwaway cluster with production's durability settings (not yet started)."""
    return PostgresCluster(settings=DURABLE)


async def migrated_database(cluster: PostgresCluster, name: str = "bench") -> str:
    """Create database *name* on *cluster*, migrate it to the newest schema, and return
    its SQLAlchemy URL."""
    from vpnshop.adapters.storage.engine import create_engine
    from vpnshop.adapters.storage.migrate import upgrade

    cluster.create_database(name)
    url = cluster.sqlalchemy_url(name)
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url


async def print_settings(engine: AsyncEngine) -> dict[str, str]:
    """Print (and return) the settings the server actually runs with."""
    values: dict[str, str] = {}
    async with engine.connect() as conn:
        for name in SHOWN:
            values[name] = str((await conn.execute(sa.text(f"SHOW {name}"))).scalar_one())
    print("   PostgreSQL ran with: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    if any(values[k] != "on" for k in ("fsync", "synchronous_commit", "full_page_writes")):
        print("   WARNING: durability settings are off; this is not a production number")
    return values
