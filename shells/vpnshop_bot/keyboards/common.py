"""Buttons many screens share."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.i18n import Translator
from vpnshop_bot.callbacks import Gate, Nav


def back_button(tr: Translator, to: str = "menu") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=tr("btn.back"), callback_data=Nav(to=to).pack())


def back_only(tr: Translator, to: str = "menu") -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[back_button(tr, to)]])


def channel_keyboard(tr: Translator, channel: str) -> InlineKeyboardMarkup:
    rows = []
    if channel.startswith("@"):
        url = f"https://t.me/{channel[1:]}"
        rows.append([InlineKeyboardButton(text=tr("btn.join_channel"), url=url)])
    rows.append([InlineKeyboardButton(text=tr("btn.check"), callback_data=Gate().pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)
