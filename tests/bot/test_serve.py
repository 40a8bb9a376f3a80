"""``vpnshop run bot`` itself (``vpnshop_bot.serve``): webhook mode with the secret path
and header, exactly the update kinds the handlers use, metrics, and a clean stop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
from aiogram import Dispatcher, Router
from aiogram.filters import Command
from aiogram.methods import SendMessage
from aiogram.methods.base import Response
from aiogram.types import Message

from tests.bot.harness import TOKEN, bot_shop
from vpnshop.config import parse_settings
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop.testing.telegram import TelegramEmulator
from vpnshop_bot import serve as serve_module
from vpnshop_bot.dispatcher import allowed_updates
from vpnshop_bot.menu import MenuRegistry
from vpnshop_bot.serve import make_bot, poll, serve

PATH = "hook_0123456789abcdef"
SECRET = "secret_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode_end_to_end(tmp_path: Path) -> None:
    """In webhook mode the bot sets its webhook with the secret and exactly its update
    kinds, answers updates posted with the secret, refuses others, serves metrics, and
    stops on request."""
    port, metrics_port = free_port(), free_port()
    async with TelegramEmulator(TOKEN) as tg, RemnawaveEmulator("3.3.2") as panel:
        settings = parse_settings(
            {
                "VPNSHOP_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
                "VPNSHOP_PANEL_URL": panel.base_url,
                "VPNSHOP_PANEL_TOKEN": panel.token,
                "VPNSHOP_BOT_TOKEN": tg.token,
                "VPNSHOP_BOT_API_URL": tg.api_url,
                "VPNSHOP_BOT_MODE": "webhook",
                "VPNSHOP_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "VPNSHOP_BOT_WEBHOOK_PATH": PATH,
                "VPNSHOP_BOT_WEBHOOK_SECRET": SECRET,
                "VPNSHOP_BOT_WEBHOOK_PORT": str(port),
                "VPNSHOP_BOT_METRICS_PORT": str(metrics_port),
            }
        )
        stop = asyncio.Event()
        dispatchers: list[Dispatcher] = []
        task = asyncio.create_task(serve(settings, stop=stop, ready=dispatchers.append))
        try:
            for _ in range(200):
                if tg.feed.webhook is not None:
                    break
                await asyncio.sleep(0.02)
            hook = tg.feed.webhook
            assert hook is not None
            assert hook.url == f"http://127.0.0.1:{port}/tg/{PATH}"
            assert hook.secret_token == SECRET
            assert tg.feed.allowed == frozenset(allowed_updates(dispatchers[0]))
            assert {"message", "callback_query", "my_chat_member"} <= tg.feed.allowed
            alice = tg.user(1001, "Alice")
            await alice.start()
            assert "Welcome, Alice" in (await alice.reply()).text
            async with aiohttp.ClientSession() as http:
                forged = await http.post(
                    hook.url,
                    json={"update_id": 1, "message": {}},
                    headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                )
                assert forged.status == 401
                scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
                body = await scraped.text()
            assert 'vpnshop_bot_updates_total{handler="start",type="Message"} 1.0' in body
            assert "vpnshop_bot_handler_seconds_bucket" in body
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def test_polling_stop_lets_running_handlers_finish(database_url: str) -> None:
    """After a stop no new update is taken, and a handler already running finishes and
    its answer reaches the user."""
    started = asyncio.Event()

    def slow(menu: MenuRegistry) -> Router:
        router = Router(name="slow")

        @router.message(Command("slow"))
        async def handler(message: Message) -> None:
            started.set()
            await asyncio.sleep(0.5)
            await message.answer("slow done")

        return router

    async with bot_shop(database_url, extra=(slow,), polling=False) as shop:
        stop = asyncio.Event()
        task = asyncio.create_task(poll(shop.dp, shop.bot, stop))
        alice = shop.user(1001, "Alice")
        await alice.send("/slow")
        await asyncio.wait_for(started.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 30)
        assert alice.last.text == "slow done"
        await alice.send("/start")
        await asyncio.sleep(0.3)
        assert not any("Welcome" in t for t in alice.texts())


async def test_the_bot_keeps_each_methods_response_type() -> None:
    """A bot from ``make_bot`` keeps the ``Response`` type of every method it called, so
    pydantic never rebuilds it after the garbage collector drops its weak cache entry."""
    async with TelegramEmulator(TOKEN) as tg:
        user = tg.user(501, "Pin", language_code="en")
        await user.start()
        bot = make_bot(tg.token, tg.api_url)
        try:
            await bot.send_message(501, "hello")
        finally:
            await bot.session.close()
    pinned = serve_module._RESPONSE_TYPES[SendMessage]
    assert pinned is Response[SendMessage.__returning__]
