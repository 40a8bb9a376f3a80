"""Reading the parts of an update the middlewares need."""

from __future__ import annotations

from aiogram.types import CallbackQuery, Message, Update


def start_payload(update: Update) -> str | None:
    """The deep-link payload of a ``/start <payload>`` message (None for anything else)."""
    message = update.message
    if message is None or not message.text or not message.text.startswith("/start"):
        return None
    command, _, rest = message.text.partition(" ")
    if command.split("@", 1)[0] != "/start":
        return None
    return rest.strip() or None


def interactive(update: Update) -> Message | CallbackQuery | None:
    """The user's message or button press, for the gates that answer those two only
    (payments, membership changes and pre-checkout queries always go through)."""
    if update.callback_query is not None:
        return update.callback_query
    message = update.message
    if message is None or message.successful_payment or message.refunded_payment:
        return None
    return message
