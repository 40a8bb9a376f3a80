"""How to connect: the platforms, then one platform's apps."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.i18n import Translator
from vpnshop_bot.callbacks import Connect
from vpnshop_bot.keyboards.common import back_button


def platforms(tr: Translator, codes: Sequence[str]) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            text=tr(f"connect.platform.{c}"), callback_data=Connect(platform=c).pack()
        )
        for c in codes
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [back_button(tr)]])


def apps(tr: Translator, links: Sequence[tuple[str, str]]) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(text=name, url=url)] for name, url in links]
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [back_button(tr, "connect")]])
