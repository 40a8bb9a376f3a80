"""The main menu keyboard: the registry's entries that apply; entries whose ``order``
has the same tens share a row."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.i18n import Translator
from vpnshop_bot.menu import MenuEntry


def main_menu(tr: Translator, entries: Sequence[MenuEntry]) -> InlineKeyboardMarkup:
    rows = [
        [InlineKeyboardButton(text=tr(e.label), callback_data=e.callback) for e in row]
        for _, row in groupby(entries, key=lambda e: e.order // 10)
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)
