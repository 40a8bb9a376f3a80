"""The language picker."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.i18n import LANGUAGES, Translator
from vpnshop_bot.callbacks import Lang
from vpnshop_bot.keyboards.common import back_button


def languages(tr: Translator, current: str) -> InlineKeyboardMarkup:
    row = [
        InlineKeyboardButton(
            text=("✓ " if code == current else "") + tr(f"lang.name.{code}"),
            callback_data=Lang(code=code).pack(),
        )
        for code in LANGUAGES
    ]
    return InlineKeyboardMarkup(inline_keyboard=[row, [back_button(tr)]])
