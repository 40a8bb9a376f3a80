"""The e2e harness for bot tests: the Telegram emulator, the Remnawave emulator, the App
built by ``bootstrap`` from settings on a real database, and the dispatcher polling the
emulator in this process.

    async with bot_shop(database_url) as shop:
        alice = shop.user(1001, "Alice")
        await alice.start()
        menu = await alice.reply()
        await alice.press("🎁 Free trial")
        await shop.run_outbox()               # what the webhooks process does
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import attrs
from aiogram import Bot, Dispatcher

from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.ports.notifier import Notifier
from vpnshop.testing.fakes import FakeClock
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop.testing.telegram import TelegramEmulator, TgUser
from vpnshop_bot.dispatcher import allowed_updates, build_dispatcher
from vpnshop_bot.features import Setup
from vpnshop_bot.metrics import BotMetrics
from vpnshop_bot.serve import make_bot, open_shared

TOKEN = "123456:AAH-emulatorTokenForVpnshopBotTests_0123"


@attrs.define
class BotShop:
    app: App
    tg: TelegramEmulator
    panel: RemnawaveEmulator
    dp: Dispatcher
    bot: Bot
    clock: FakeClock
    metrics: BotMetrics

    def user(self, uid: int, name: str = "Alice", language_code: str = "en", **kw: str) -> TgUser:
        return self.tg.user(uid, name, language_code=language_code, **kw)

    async def customer_id(self, telegram_id: int) -> int:
        async with self.app.deps.uow() as uow:
            customer = await uow.customers.by_telegram_id(telegram_id)
        assert customer is not None and customer.id is not None
        return customer.id

    async def run_outbox(self, rounds: int = 5) -> None:
        """Drain the outbox as the webhooks process does, moving the clock past retry
        backoffs between rounds."""
        for _ in range(rounds):
            await self.app.outbox.run_once()
            self.clock.advance(timedelta(hours=1))


@asynccontextmanager
async def bot_shop(
    database_url: str,
    env: Mapping[str, str] | None = None,
    *,
    link_wait: float = 3.0,
    notifier: Notifier | None = None,
    extra: Sequence[Setup] = (),
    polling: bool = True,
    providers: bool = False,
) -> AsyncIterator[BotShop]:
    """The shop with its bot polling the Telegram emulator (see the module docstring);
    with *polling* False the test runs the dispatcher itself. With *providers* the
    gateways are built from *env* (and Telegram Stars from the bot token), else none."""
    async with TelegramEmulator(TOKEN) as tg, RemnawaveEmulator("3.3.2") as panel:
        settings = parse_settings(
            {
                "VPNSHOP_DATABASE_URL": database_url,
                "VPNSHOP_PANEL_URL": panel.base_url,
                "VPNSHOP_PANEL_TOKEN": panel.token,
                "VPNSHOP_BOT_TOKEN": tg.token,
                "VPNSHOP_BOT_API_URL": tg.api_url,
                "VPNSHOP_BOT_METRICS_PORT": "0",
                **(env or {}),
            }
        )
        clock = FakeClock(datetime.now(UTC))
        async with (
            AsyncExitStack() as stack,
            bootstrap(
                settings, clock=clock, gateways=None if providers else {}, notifier=notifier
            ) as app,
        ):
            await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
            metrics = BotMetrics()
            # As serve() does: throttling and FSM state in Redis when VPNSHOP_REDIS_URL is set.
            limiter, storage = await open_shared(settings.bot, stack)
            dp = build_dispatcher(
                app,
                settings.bot,
                limiter=limiter,
                storage=storage,
                metrics=metrics,
                link_wait=link_wait,
                extra=extra,
            )
            bot = make_bot(tg.token, tg.api_url)
            if not polling:
                try:
                    yield BotShop(app, tg, panel, dp, bot, clock, metrics)
                finally:
                    await bot.session.close()
                return
            task = asyncio.create_task(
                dp.start_polling(
                    bot,
                    allowed_updates=allowed_updates(dp),
                    handle_signals=False,
                    close_bot_session=False,
                    polling_timeout=1,
                )
            )
            try:
                yield BotShop(app, tg, panel, dp, bot, clock, metrics)
            finally:
                if not task.done():
                    await dp.stop_polling()
                await task
                await bot.session.close()
