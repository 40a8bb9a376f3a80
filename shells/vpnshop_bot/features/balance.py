"""Balance: the amount in each currency the customer holds, and the history of their
ledger entries, a page at a time (newest first)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery

from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ValidationError
from vpnshop.i18n import Translator
from vpnshop.i18n.formats import date
from vpnshop.services.balance_history import HistoryEntry, HistoryPage
from vpnshop.services.home import Home
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.keyboards import balance as kb
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show

PAGE_SIZE = 10


def balance_text(tr: Translator, home: Home) -> str:
    if not home.balances:
        return f"{tr('balance.title')}\n{tr('balance.empty')}"
    amounts = "\n".join(f"• {m}" for m in home.balances)
    return f"{tr('balance.title')}\n{amounts}"


def entry_line(tr: Translator, entry: HistoryEntry) -> str:
    amount = ("+" if entry.amount.minor > 0 else "") + str(entry.amount)
    when = date(tr.language, entry.created_at) if entry.created_at else ""
    kind = entry.kind.value
    return tr("balance.entry", when=when, kind=tr(f"ledger.{kind}"), amount=amount)


def history_text(tr: Translator, page: HistoryPage) -> str:
    if not page.entries:
        return f"{tr('balance.history')}\n{tr('balance.history.empty')}"
    lines = [tr("balance.history.page", page=page.page + 1)]
    lines.extend(entry_line(tr, e) for e in page.entries)
    return "\n".join(lines)


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("balance", "btn.balance", Nav(to="balance").pack(), order=40))
    router = Router(name="balance")

    @router.callback_query(Nav.filter(F.to == "balance"))
    async def balance(
        query: CallbackQuery, journeys: CustomerJourneys, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        home = await journeys.home(customer.id)
        await show(query, balance_text(tr, home), kb.balance(tr))

    @router.callback_query(kb.History.filter())
    async def history(
        query: CallbackQuery,
        callback_data: kb.History,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        assert customer.id is not None
        try:
            page = await journeys.balance_history(customer.id, callback_data.p, PAGE_SIZE)
        except ValidationError:  # a forged page number
            page = await journeys.balance_history(customer.id, 0, PAGE_SIZE)
        await show(query, history_text(tr, page), kb.history(tr, page))

    return router
