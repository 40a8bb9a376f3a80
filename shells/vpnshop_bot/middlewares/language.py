"""The customer's language: the stored choice (set from the Telegram client on first
contact: ru for ru/uk/be, en otherwise; switchable in the menu)."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User

from vpnshop.domain.customer import Customer
from vpnshop.i18n import Translator, client_language
from vpnshop_bot.middlewares.registration import Handler


class LanguageMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        customer: Customer | None = data.get("customer")
        user: User | None = data.get("event_from_user")
        if customer is not None:
            data["tr"] = Translator(customer.language)
        else:
            data["tr"] = Translator(client_language(user.language_code if user else None))
        return await handler(event, data)
