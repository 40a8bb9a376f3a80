"""The free trial: once per account (the database decides). The link is shown when the
panel user exists in time; otherwise the customer is told it will follow, and the
outbox sends it."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.bootstrap import App
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import TrialAlreadyUsedError, ValidationError
from vpnshop.i18n import Translator
from vpnshop.i18n.formats import date
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.context import BotContext
from vpnshop_bot.keyboards.common import back_button, back_only
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show


def setup(menu: MenuRegistry) -> Router:
    menu.add(
        MenuEntry(
            "trial",
            "btn.trial",
            Nav(to="trial").pack(),
            order=20,
            visible=lambda home: home.trial_available,
        )
    )
    router = Router(name="trial")

    @router.callback_query(Nav.filter(F.to == "trial"))
    async def activate(
        query: CallbackQuery, app: App, ctx: BotContext, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        assert app.ready_link is not None
        try:
            sub = await app.activate_trial(customer.id)
        except TrialAlreadyUsedError:
            await show(query, tr("trial.used"), back_only(tr))
            return
        except ValidationError:
            await show(query, tr("trial.off"), back_only(tr))
            return
        assert sub.id is not None
        until = date(tr.language, sub.expires_at)
        link = await app.ready_link(customer.id, sub.id, wait=ctx.link_wait)
        if link is None:
            await show(query, tr("trial.pending", until=until), back_only(tr))
            return
        connect = InlineKeyboardButton(
            text=tr("btn.connect"), callback_data=Nav(to="connect").pack()
        )
        markup = InlineKeyboardMarkup(inline_keyboard=[[connect], [back_button(tr)]])
        await show(query, tr("trial.ready", until=until, link=link), markup)

    return router
