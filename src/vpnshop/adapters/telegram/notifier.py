"""The Notifier port over the Bot API (:class:`BotApiClient`), without aiogram.

What a Bot API answer means for the outbox job that sends the message:

* 429 with ``retry_after``: wait exactly that long and send again, at most
  ``max_flood_waits`` times and only while the wait is at most ``max_wait`` seconds;
  otherwise :class:`RetryLaterError` so the outbox reschedules the job by exactly that.
* 403 (blocked by the user, user deactivated, kicked from the group):
  :class:`RecipientUnreachableError`; the caller marks the customer unreachable and stops.
* 400 with ``migrate_to_chat_id`` (a group became a supergroup): sent to the new chat,
  which is remembered for later messages.
* 401 (a wrong token), 404 (a wrong base URL), 5xx, no answer at all:
  :class:`NotifierUnavailableError`; nothing is wrong with the message, so the outbox
  retries with backoff and the messages go out once the operator fixes the setting.
* Any other 4xx: :class:`MessageRejectedError` with Telegram's reason; the job is parked.

Texts arrive rendered, in HTML parse mode. A message with an image goes out as one photo
with the text as its caption, or, when the text is longer than a caption may be, as the
photo followed by the text (buttons then go with the text).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vpnshop.adapters.telegram.client import (
    BotApiClient,
    BotApiError,
    BotApiUnavailableError,
    InputFile,
)
from vpnshop.ports.notifier import (
    Message,
    MessageRejectedError,
    NotifierUnavailableError,
    RecipientUnreachableError,
    RetryLaterError,
)

log = logging.getLogger(__name__)

MAX_CAPTION = 1024  # characters; conservative: tags count although Telegram strips them


def reply_markup(message: Message) -> dict[str, Any] | None:
    """The inline keyboard of *message* in Bot API form (None without buttons)."""
    if not message.buttons:
        return None
    rows = []
    for row in message.buttons:
        buttons = []
        for button in row:
            item: dict[str, Any] = {"text": button.text}
            if button.url is not None:
                item["url"] = button.url
            if button.callback is not None:
                item["callback_data"] = button.callback
            buttons.append(item)
        rows.append(buttons)
    return {"inline_keyboard": rows}


class TelegramNotifier:
    """Sends :class:`Message` values to Telegram chats (see the module docstring).

    *sleep* is how the notifier waits out a flood limit; tests pass one that records.
    """

    def __init__(
        self,
        client: BotApiClient,
        *,
        max_wait: float = 30.0,
        max_flood_waits: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._max_wait = max_wait
        self._max_flood_waits = max_flood_waits
        self._sleep = sleep
        self._migrated: dict[int, int] = {}

    async def send(self, chat_id: int, message: Message) -> None:
        markup = reply_markup(message)
        if message.image_png is None:
            await self._call(chat_id, "sendMessage", {"text": message.text, "reply_markup": markup})
            return
        photo = {"photo": InputFile("image.png", message.image_png, "image/png")}
        if len(message.text) <= MAX_CAPTION:
            params = {"caption": message.text or None, "reply_markup": markup}
            await self._call(chat_id, "sendPhoto", params, photo)
            return
        await self._call(chat_id, "sendPhoto", {}, photo)
        await self._call(chat_id, "sendMessage", {"text": message.text, "reply_markup": markup})

    async def _call(
        self,
        chat_id: int,
        method: str,
        params: dict[str, Any],
        files: dict[str, InputFile] | None = None,
    ) -> Any:
        flood_waits = 0
        migrated = False
        while True:
            target = self._migrated.get(chat_id, chat_id)
            full = {"chat_id": target, "parse_mode": "HTML", **params}
            try:
                return await self._client.call(method, full, files)
            except BotApiUnavailableError as e:
                raise NotifierUnavailableError(str(e)) from None
            except BotApiError as e:
                if e.error_code == 429 and e.retry_after is not None:
                    wait = float(e.retry_after)
                    if wait > self._max_wait or flood_waits >= self._max_flood_waits:
                        raise RetryLaterError(wait) from None
                    flood_waits += 1
                    log.info("telegram flood limit on chat %s: waiting %s s", target, wait)
                    await self._sleep(wait)
                    continue
                if e.migrate_to_chat_id is not None and not migrated:
                    migrated = True
                    self._migrated[chat_id] = e.migrate_to_chat_id
                    log.warning(
                        "telegram chat %s became supergroup %s; sending there",
                        chat_id,
                        e.migrate_to_chat_id,
                    )
                    continue
                raise _translate(target, e) from None


def _translate(chat_id: int, e: BotApiError) -> Exception:
    reason = f"telegram chat {chat_id}: {e.error_code} {e.description}"
    if e.error_code == 403:
        return RecipientUnreachableError(reason)
    if e.error_code == 401:
        return NotifierUnavailableError(f"{reason} (the bot token is wrong or revoked)")
    if e.error_code == 429:  # a flood limit without retry_after: back off as for 5xx
        return NotifierUnavailableError(reason)
    if e.error_code == 404:
        return NotifierUnavailableError(f"{reason} (is the Bot API base URL right?)")
    if 400 <= e.error_code < 500:
        return MessageRejectedError(reason)
    return NotifierUnavailableError(reason)
