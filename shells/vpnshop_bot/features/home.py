"""The main menu: the customer's state (subscription, balance) over the buttons of
every feature that applies to them (see ``MenuRegistry``)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from vpnshop.domain.customer import Customer
from vpnshop.domain.subscription import SubscriptionStatus
from vpnshop.i18n import Translator
from vpnshop.i18n.formats import date
from vpnshop.services.home import Home
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.callbacks import Gate, Nav
from vpnshop_bot.context import BotContext
from vpnshop_bot.keyboards.menu import main_menu
from vpnshop_bot.menu import MenuRegistry
from vpnshop_bot.screens import show


def home_text(tr: Translator, home: Home) -> str:
    lines = [tr("menu.title")]
    sub = home.subscription
    if sub is None:
        lines.append(tr("menu.sub.none"))
    elif sub.status is SubscriptionStatus.ACTIVE:
        until = date(tr.language, sub.expires_at)
        lines.append(tr("menu.sub.active", until=until, days=sub.days_left))
    else:
        lines.append(tr("menu.sub.inactive", until=date(tr.language, sub.expires_at)))
    amounts = [str(m) for m in home.balances if m.minor]
    if amounts:
        lines.append(tr("menu.balance", amount=", ".join(amounts)))
    return "\n".join(lines)


async def home_screen(
    ctx: BotContext, journeys: CustomerJourneys, customer: Customer, tr: Translator
) -> tuple[str, InlineKeyboardMarkup]:
    assert customer.id is not None
    home = await journeys.home(customer.id)
    return home_text(tr, home), main_menu(tr, ctx.menu.for_home(home))


def setup(menu: MenuRegistry) -> Router:
    router = Router(name="home")

    @router.message(Command("menu"))
    async def menu_command(
        message: Message,
        ctx: BotContext,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await show(message, *await home_screen(ctx, journeys, customer, tr))

    @router.callback_query(Nav.filter(F.to == "menu"))
    @router.callback_query(Gate.filter())
    async def menu_button(
        query: CallbackQuery,
        ctx: BotContext,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        await show(query, *await home_screen(ctx, journeys, customer, tr))

    return router
