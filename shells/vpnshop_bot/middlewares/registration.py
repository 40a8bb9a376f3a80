"""Registration on first contact through ``journeys.onboard``, the one idempotent
get-or-create: a new user's first updates may race, the database keeps one customer.

A ``/start <payload>`` message is onboarded with its deep link (referral, promo or
campaign), so the start handler only renders ``data["onboarding"]``. Any other update
of a customer seen in the last ``CustomerCache.ttl`` seconds takes the customer from the
per-process cache (``vpnshop_bot.customers``): no database read before the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User

from vpnshop.i18n import client_language
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.onboarding import Onboarding
from vpnshop_bot.customers import CustomerCache
from vpnshop_bot.middlewares._event import start_payload

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class RegistrationMiddleware(BaseMiddleware):
    def __init__(self, cache: CustomerCache) -> None:
        self.cache = cache

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot or not isinstance(event, Update):
            return await handler(event, data)
        payload = start_payload(event)
        customer = None if _is_start(event) else self.cache.get(user.id)
        if customer is not None:
            onboarding = Onboarding(customer, created=False)
        else:
            journeys: CustomerJourneys = data["journeys"]
            onboarding = await journeys.onboard(
                user.id,
                payload=payload,
                language_code=client_language(user.language_code),
                username=user.username,
            )
            if onboarding.customer.referral_code is not None:
                self.cache.put(onboarding.customer)
        data["onboarding"] = onboarding
        data["customer"] = onboarding.customer
        return await handler(event, data)


def _is_start(update: Update) -> bool:
    message = update.message
    if message is None or not message.text:
        return False
    return message.text.partition(" ")[0].split("@", 1)[0] == "/start"
