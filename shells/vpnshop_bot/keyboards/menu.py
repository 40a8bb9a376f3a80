"""The main menu keyboard: the registry's entries that apply; entries whose ``order``
has the same tens share a row."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import groupby

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.i18n import Translator
from vpnshop_bot.menu import MenuEntry


def main_menu(tr: Translator, entries: Sequence[MenuEntry]) -> InlineKeyboardMarkup:
    return _built(tr.language, tuple(entries))


# Built once per language and set of entries (a handful): pydantic models cost more to
# build on every /menu than the rest of the screen.
@functools.lru_cache(maxsize=256)
def _built(language: str, entries: tuple[MenuEntry, ...]) -> InlineKeyboardMarkup:
    tr = Translator(language)
    rows = [
        [InlineKeyboardButton(text=tr(e.label), callback_data=e.callback) for e in row]
        for _, row in groupby(entries, key=lambda e: e.order // 10)
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)
