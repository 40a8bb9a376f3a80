"""Registration on first contact through ``journeys.onboard``, the one idempotent
get-or-create: a new user's first updates may race, the database keeps one customer.

A ``/start <payload>`` message is onboarded with its deep link (referral, promo or
campaign), so the start handler only renders ``data["onboarding"]``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User

from vpnshop.i18n import client_language
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.middlewares._event import start_payload

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class RegistrationMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot or not isinstance(event, Update):
            return await handler(event, data)
        journeys: CustomerJourneys = data["journeys"]
        onboarding = await journeys.onboard(
            user.id,
            payload=start_payload(event),
            language_code=client_language(user.language_code),
            username=user.username,
        )
        data["onboarding"] = onboarding
        data["customer"] = onboarding.customer
        return await handler(event, data)
