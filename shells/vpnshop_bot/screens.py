"""Showing a screen: edit the menu message in place after a button, send one after a
typed message. "message is not modified" (a double tap) is success."""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

_NOT_MODIFIED = "message is not modified"
_CANNOT_EDIT = ("message to edit not found", "there is no text in the message to edit")


async def show(
    event: Message | CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    """Edit the message the button was under, or answer the typed message."""
    if isinstance(event, CallbackQuery):
        message = event.message
        if isinstance(message, Message):
            try:
                await message.edit_text(text, reply_markup=markup)
                return
            except TelegramBadRequest as e:
                if _NOT_MODIFIED in e.message:
                    return
                if not any(reason in e.message for reason in _CANNOT_EDIT):
                    raise
        if event.bot is not None:
            await event.bot.send_message(event.from_user.id, text, reply_markup=markup)
        return
    await event.answer(text, reply_markup=markup)
