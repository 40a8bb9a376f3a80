"""Support: the link or username from the settings (the button shows only when one is
configured)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.config.bot import BotSettings
from vpnshop.i18n import Translator
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.context import BotContext
from vpnshop_bot.keyboards.common import back_button
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show


def support_url(settings: BotSettings) -> str | None:
    if settings.support_url:
        return settings.support_url
    if settings.support_username:
        return f"https://t.me/{settings.support_username}"
    return None


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("support", "btn.support", Nav(to="support").pack(), order=81))
    router = Router(name="support")

    @router.callback_query(Nav.filter(F.to == "support"))
    async def support(query: CallbackQuery, ctx: BotContext, tr: Translator) -> None:
        await query.answer()
        url = support_url(ctx.settings)
        if url is None:
            await show(
                query, tr("support.none"), InlineKeyboardMarkup(inline_keyboard=[[back_button(tr)]])
            )
            return
        username = ctx.settings.support_username
        text = tr("support.username", username=username) if username else tr("support.text")
        rows = [[InlineKeyboardButton(text=tr("btn.write_support"), url=url)], [back_button(tr)]]
        await show(query, text, InlineKeyboardMarkup(inline_keyboard=rows))

    return router
