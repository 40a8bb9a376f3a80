"""The schema check at start reads the revision without Alembic, and agrees with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.migrate import (
    HEAD_REVISION,
    current_revision,
    head_revision,
    upgrade_if_behind,
)

# Starts the shop's resources on a SQLite file, then says which heavy modules it imported.
STARTS = """
import asyncio, sys
from vpnshop.bootstrap import bootstrap
from vpnshop.config import parse_settings

async def main():
    async with bootstrap(parse_settings({"VPNSHOP_DATABASE_URL": sys.argv[1]})):
        pass

asyncio.run(main())
print(sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] == "alembic"}))
"""


def test_head_revision_constant_is_alembics_head() -> None:
    """HEAD_REVISION names the newest migration (a new one that forgets it fails here)."""
    assert head_revision() == HEAD_REVISION


async def test_current_revision_of_empty_and_migrated_databases(database_url: str) -> None:
    """An empty database is at no revision; a migrated one is at the head, read with one
    plain query on SQLite and PostgreSQL."""
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == HEAD_REVISION
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE alembic_version"))
        assert await current_revision(engine) is None
    finally:
        await engine.dispose()


async def test_upgrade_if_behind_migrates_only_when_needed(tmp_path: Path) -> None:
    """A new SQLite file is migrated to the head; a current one is left alone."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    try:
        assert await upgrade_if_behind(engine) is True
        assert await current_revision(engine) == HEAD_REVISION
        assert await upgrade_if_behind(engine) is False
    finally:
        await engine.dispose()


def test_starting_on_a_current_database_does_not_import_alembic(tmp_path: Path) -> None:
    """A process starting on an up-to-date database never imports Alembic (its import is
    a fifth of a start); the first start, which migrates, does."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"

    def start() -> str:
        done = subprocess.run(
            [sys.executable, "-c", STARTS, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    assert start() == "['alembic']"
    assert start() == "[]"
