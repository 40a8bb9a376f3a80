"""The optional required channel (``VPNSHOP_REQUIRED_CHANNEL``): a customer who is not a
member gets "join, then press Check" instead of the handler. Membership comes from
``getChatMember``; a positive answer is cached for ``ttl`` seconds, a negative one never
(the Check button asks again). When Telegram will not say (the bot is not an admin of
the channel), the gate stays open and the operator is told in the log."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, TelegramObject, Update

from vpnshop.i18n import Translator
from vpnshop_bot.callbacks import Gate
from vpnshop_bot.context import BotContext
from vpnshop_bot.keyboards.common import channel_keyboard
from vpnshop_bot.middlewares._event import interactive
from vpnshop_bot.middlewares.registration import Handler

log = logging.getLogger(__name__)
MAX_CACHED = 100_000  # users; expired entries are dropped when it is reached
MEMBER_STATUSES = frozenset({"creator", "administrator", "member"})


class ChannelGateMiddleware(BaseMiddleware):
    def __init__(self, ctx: BotContext, ttl: float = 60.0) -> None:
        self.ctx = ctx
        self.ttl = ttl
        self._members: dict[int, float] = {}  # user id -> monotonic time the entry expires

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        channel = self.ctx.settings.required_channel
        target = interactive(event) if isinstance(event, Update) else None
        if channel is None or target is None or target.from_user is None:
            return await handler(event, data)
        uid = target.from_user.id
        check = isinstance(target, CallbackQuery) and target.data == Gate().pack()
        if uid in self.ctx.admin_ids or (
            not check and self._members.get(uid, 0) > time.monotonic()
        ):
            return await handler(event, data)
        if await self._is_member(data["bot"], channel, uid):
            self._remember(uid)
            return await handler(event, data)
        self.ctx.metrics.dropped.labels("channel").inc()
        tr: Translator = data["tr"]
        if isinstance(target, CallbackQuery):
            await target.answer(tr("channel.not_yet") if check else None, show_alert=check)
            if check:
                return None
        markup = channel_keyboard(tr, channel)
        await data["bot"].send_message(
            uid, tr("channel.join", channel=channel), reply_markup=markup
        )
        return None

    def _remember(self, uid: int) -> None:
        now = time.monotonic()
        if len(self._members) >= MAX_CACHED:
            self._members = {u: t for u, t in self._members.items() if t > now}
        self._members[uid] = now + self.ttl

    async def _is_member(self, bot: Bot, channel: str, uid: int) -> bool:
        try:
            member = await bot.get_chat_member(channel, uid)
        except TelegramAPIError as e:
            log.warning("required channel %s: cannot check membership (%s); gate open", channel, e)
            return True
        status = str(getattr(member.status, "value", member.status))
        return status in MEMBER_STATUSES or bool(getattr(member, "is_member", False))
