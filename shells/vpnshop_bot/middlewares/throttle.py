"""Per-user throttling of messages and button presses (customers and admins have their
own limit per minute). Over the limit the update is dropped; the user gets one polite
message per minute, and a button press is still answered so the client stops spinning.

The limiter is the ``RateLimiter`` port: in memory, or Redis when ``VPNSHOP_REDIS_URL`` is
set so that replicas share the counts."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, TelegramObject, Update

from vpnshop.i18n import Translator
from vpnshop_bot.context import BotContext
from vpnshop_bot.middlewares._event import interactive
from vpnshop_bot.middlewares.registration import Handler

WINDOW = 60.0


class ThrottleMiddleware(BaseMiddleware):
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        target = interactive(event) if isinstance(event, Update) else None
        if target is None:
            return await handler(event, data)
        uid = target.from_user.id if target.from_user else 0
        s = self.ctx.settings
        limit = s.throttle_admin if uid in self.ctx.admin_ids else s.throttle_customer
        if await self.ctx.limiter.acquire(f"tg:{uid}", limit, WINDOW) == 0:
            return await handler(event, data)
        self.ctx.metrics.dropped.labels("throttled").inc()
        tr: Translator = data["tr"]
        warn = await self.ctx.limiter.acquire(f"tg-warned:{uid}", 1, WINDOW) == 0
        if isinstance(target, CallbackQuery):
            await target.answer(tr("throttle.notice") if warn else None)
        elif warn:
            await target.answer(tr("throttle.notice"))
        return None
