"""``vpnshop check`` on the bot's settings, with and without reaching the Bot API."""

from __future__ import annotations

import io
from pathlib import Path

from tests.bot.harness import TOKEN
from vpnshop.checks import run_checks
from vpnshop.config import parse_settings
from vpnshop.testing.telegram import TelegramEmulator


async def test_check_describes_and_reaches_the_bot_api(tmp_path: Path) -> None:
    """check names the bot's API, mode and throttling, and getMe proves the token; a
    wrong token is a FAIL naming the cause."""
    async with TelegramEmulator(TOKEN) as tg:
        env = {
            "VPNSHOP_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            "VPNSHOP_BOT_TOKEN": tg.token,
            "VPNSHOP_BOT_API_URL": tg.api_url,
        }
        out = io.StringIO()
        assert await run_checks(parse_settings(env), reach=True, out=out) == 0
        text = out.getvalue()
        assert "long polling" in text
        assert "30/min customers, 100/min admins, in memory" in text
        assert "the token is @vpnshop_test_bot's" in text
        assert "VPNSHOP_SUPPORT_URL and VPNSHOP_SUPPORT_USERNAME are not set" in text
        wrong = {**env, "VPNSHOP_BOT_TOKEN": "123456:" + "B" * 35}
        out = io.StringIO()
        assert await run_checks(parse_settings(wrong), reach=True, out=out) == 1
        assert "401 the token is wrong or revoked" in out.getvalue()
