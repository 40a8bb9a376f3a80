"""What no other router took: an unknown command or stray text gets a hint and the menu
button; a stale button (from an old message or another version) gets the menu."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from vpnshop.domain.customer import Customer
from vpnshop.i18n import Translator
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.context import BotContext
from vpnshop_bot.features.home import home_screen
from vpnshop_bot.keyboards.common import back_only
from vpnshop_bot.menu import MenuRegistry
from vpnshop_bot.screens import show


def setup(menu: MenuRegistry) -> Router:
    router = Router(name="fallback")

    @router.message()
    async def unknown(message: Message, tr: Translator) -> None:
        text = message.text or ""
        key = "fallback.command" if text.startswith("/") else "fallback.text"
        await message.answer(tr(key), reply_markup=back_only(tr))

    @router.callback_query()
    async def stale(
        query: CallbackQuery,
        ctx: BotContext,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer(tr("fallback.stale"))
        await show(query, *await home_screen(ctx, journeys, customer, tr))

    return router
