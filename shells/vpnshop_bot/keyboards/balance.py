"""The balance screen and its history pages. The top-up button is the top-up feature's
(it registers it itself): this screen shows only what it owns."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.i18n import Translator
from vpnshop.services.balance_history import HistoryPage
from vpnshop_bot.keyboards.common import back_button


class History(CallbackData, prefix="bh"):
    """Page ``p`` (from 0, newest first) of the customer's balance history."""

    p: int


def balance(tr: Translator) -> InlineKeyboardMarkup:
    history = InlineKeyboardButton(text=tr("btn.history"), callback_data=History(p=0).pack())
    return InlineKeyboardMarkup(inline_keyboard=[[history], [back_button(tr)]])


def history(tr: Translator, page: HistoryPage) -> InlineKeyboardMarkup:
    pager = []
    if page.has_previous:
        pager.append(
            InlineKeyboardButton(
                text=tr("btn.newer"), callback_data=History(p=page.page - 1).pack()
            )
        )
    if page.has_next:
        pager.append(
            InlineKeyboardButton(
                text=tr("btn.older"), callback_data=History(p=page.page + 1).pack()
            )
        )
    rows = [pager] if pager else []
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [back_button(tr, "balance")]])
