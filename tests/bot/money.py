"""The bot with every payment provider: the Telegram, Remnawave and provider emulators,
the App with gateways built from settings (Telegram Stars from the bot token) and the
webhook server the providers notify, all on one real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from tests.bot.harness import BotShop, bot_shop
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import Payment
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.freekassa import FreeKassaEmulator
from vpnshop.testing.providers import provider_env
from vpnshop.testing.telegram import TgUser
from vpnshop.testing.tribute import TributeEmulator
from vpnshop.testing.yookassa import YooKassaEmulator
from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.server import start_site

TRIBUTE_CODE = "sMONTH"
BUY = "🛒 Buy or extend"
MONTH = "1 month"


@attrs.define
class MoneyShop:
    bot: BotShop
    yookassa: YooKassaEmulator
    cryptopay: CryptoPayEmulator
    freekassa: FreeKassaEmulator
    tribute: TributeEmulator

    async def started(self, uid: int, name: str = "Alice", **kw: str) -> TgUser:
        user = self.bot.user(uid, name, **kw)
        await user.start()
        await user.reply()
        return user

    async def credit(self, telegram_id: int, amount: Money) -> None:
        cid = await self.bot.customer_id(telegram_id)
        await self.bot.app.adjust_balance(
            cid, amount, admin=Actor.admin(1), reason="test", key=f"t:{telegram_id}:{amount.minor}"
        )

    async def payments(self, telegram_id: int) -> list[Payment]:
        cid = await self.bot.customer_id(telegram_id)
        async with self.bot.app.deps.uow() as uow:
            return [p for p in await uow.payments.recent(100) if p.customer_id == cid]

    async def snapshot(self) -> tuple[object, ...]:
        """Payments, orders' count, balances and subscriptions: what must not change."""
        async with self.bot.app.deps.uow() as uow:
            payments = await uow.payments.recent(1000)
            subs = []
            for p in {p.customer_id for p in payments}:
                subs.extend(await uow.subscriptions.for_customer(p))
        return (
            sorted((p.id, p.status) for p in payments),
            sorted((s.id, s.expires_at) for s in subs),
        )


@asynccontextmanager
async def money_shop(database_url: str) -> AsyncIterator[MoneyShop]:
    async with (
        YooKassaEmulator() as yk,
        CryptoPayEmulator() as cp,
        FreeKassaEmulator() as fk,
        TributeEmulator() as tb,
    ):
        tb.add_product(TRIBUTE_CODE, price=Money(19900, RUB).minor)
        env = {
            **provider_env(yk, cp, fk, tb, tribute_product=TRIBUTE_CODE),
        }
        async with bot_shop(database_url, env, providers=True) as bot:
            runner, url = await start_site(create_app(bot.app), access_log=False)
            try:
                yk.webhook_url = f"{url}/webhooks/yookassa"
                cp.webhook_url = f"{url}/webhooks/cryptopay"
                fk.webhook_url = f"{url}/webhooks/freekassa"
                tb.webhook_url = f"{url}/webhooks/tribute"
                yield MoneyShop(bot, yk, cp, fk, tb)
            finally:
                await runner.cleanup()
