"""Switch the bot's language; the choice is stored and wins over the Telegram client's."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery

from vpnshop.domain.customer import Customer
from vpnshop.i18n import LANGUAGES, Translator
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.callbacks import Lang, Nav
from vpnshop_bot.context import BotContext
from vpnshop_bot.features.home import home_screen
from vpnshop_bot.keyboards.language import languages
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("lang", "btn.language", Nav(to="lang").pack(), order=80))
    router = Router(name="language")

    @router.callback_query(Nav.filter(F.to == "lang"))
    async def choose(query: CallbackQuery, customer: Customer, tr: Translator) -> None:
        await query.answer()
        await show(query, tr("lang.choose"), languages(tr, customer.language))

    @router.callback_query(Lang.filter(F.code.in_(LANGUAGES)))
    async def switch(
        query: CallbackQuery,
        callback_data: Lang,
        ctx: BotContext,
        journeys: CustomerJourneys,
        customer: Customer,
    ) -> None:
        await query.answer()
        assert customer.id is not None
        await journeys.set_language(customer.id, callback_data.code)
        ctx.customers.forget(customer.telegram_id)  # the next update reads the new language
        tr = Translator(callback_data.code)
        text, markup = await home_screen(ctx, journeys, customer, tr)
        await show(query, f"{tr('lang.switched')}\n\n{text}", markup)

    return router
