"""The error handler: the user gets a message in their language with a short reference
id; the log (and Sentry, when configured) gets the traceback with the same id."""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent, User

from vpnshop.i18n import Translator, client_language

log = logging.getLogger("vpnshop_bot.errors")


def reference() -> str:
    return secrets.token_hex(4)


async def on_error(event: ErrorEvent, bot: Bot, **data: Any) -> bool:
    ref = reference()
    kind = event.update.event_type
    log.error(
        "bot error [ref %s] in %s update %s",
        ref,
        kind,
        event.update.update_id,
        exc_info=(type(event.exception), event.exception, event.exception.__traceback__),
    )
    sentry = sys.modules.get("sentry_sdk")  # imported (and set up) only when configured
    if sentry is not None:
        sentry.set_tag("ref", ref)
        sentry.capture_exception(event.exception)
    user: User | None = data.get("event_from_user")
    tr: Translator = data.get("tr") or Translator(
        client_language(user.language_code if user else None)
    )
    if user is None or user.is_bot:
        return True
    try:
        if event.update.callback_query is not None:
            # answered before the error, or too old: either way nothing spins
            with contextlib.suppress(TelegramAPIError):
                await event.update.callback_query.answer()
        if event.update.pre_checkout_query is None:
            await bot.send_message(user.id, tr("error.message", ref=ref))
    except TelegramAPIError as e:
        log.warning("bot error [ref %s]: could not tell the user: %s", ref, e)
    return True
