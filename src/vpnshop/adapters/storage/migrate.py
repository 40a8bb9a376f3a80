"""Schema migrations: Alembic is the only way the schema is made.

Every process checks the schema at start, and most find it current; importing Alembic for
that costs about a third of a second (``python -X importtime``), a fifth of a start. So
the check reads ``alembic_version`` with one plain query and compares it with
:data:`HEAD_REVISION`, the newest migration's id written down here (a test proves it
equals Alembic's head, so a new migration that forgets to update it fails CI); Alembic
itself is imported only when a migration actually runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.ports.storage import StorageUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD_REVISION = "0006"  # the newest file in migrations/versions; see the module docstring


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    """The newest revision, as Alembic's script directory says (imports Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to *revision* (the newest by default). Idempotent."""

    def run(connection: Connection) -> None:
        from alembic import command

        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def upgrade_if_behind(engine: AsyncEngine) -> bool:
    """Upgrade to the newest revision unless the database is already there (then
    Alembic is not even imported); True if a migration ran."""
    if await current_revision(engine) == HEAD_REVISION:
        return False
    await upgrade(engine)
    return True


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, None when it has no schema yet."""
    async with engine.connect() as conn:
        try:
            result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            rows = list(result.scalars())
        except (DBAPIError, StorageUnavailableError):  # SQLite's error is translated
            # A missing table is an empty database; anything else is a real failure.
            await conn.rollback()
            if await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version")):
                raise
            return None
    if len(rows) > 1:
        raise RuntimeError(f"the database is at several revisions: {', '.join(rows)}")
    return str(rows[0]) if rows else None
