"""A banned customer gets one message in their language (at most once an hour), and
nothing else happens: no handler runs."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, TelegramObject, Update

from vpnshop.domain.customer import Customer
from vpnshop.i18n import Translator
from vpnshop_bot.context import BotContext
from vpnshop_bot.middlewares._event import interactive
from vpnshop_bot.middlewares.registration import Handler

NOTICE_EVERY = 3600.0  # seconds between two ban notices to one customer


class BanMiddleware(BaseMiddleware):
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        customer: Customer | None = data.get("customer")
        target = interactive(event) if isinstance(event, Update) else None
        if customer is None or not customer.banned or target is None:
            return await handler(event, data)
        self.ctx.metrics.dropped.labels("banned").inc()
        tr: Translator = data["tr"]
        first = await self.ctx.limiter.acquire(f"ban:{customer.telegram_id}", 1, NOTICE_EVERY) == 0
        if isinstance(target, CallbackQuery):
            await target.answer(tr("ban.notice") if first else None)
        elif first:
            await target.answer(tr("ban.notice"))
        return None
