"""The migrations and ``tables.py`` describe the same schema, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.tables import metadata


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    """A database migrated to head differs in nothing from what the repositories query
    (a column added to tables.py without a migration, or the reverse, fails here)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
