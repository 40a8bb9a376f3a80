"""Fixtures for the bot's e2e tests (see ``harness``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.bot.harness import BotShop, bot_shop


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[BotShop]:
    """The shop and its bot on SQLite (and PostgreSQL where the database fixture runs it)."""
    async with bot_shop(database_url) as s:
        yield s
