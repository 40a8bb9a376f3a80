"""A notifier that records what it delivered, and can refuse like Telegram does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from vpnshop.ports.notifier import Message, Notifier, RecipientUnreachableError, RetryLaterError


@attrs.frozen
class SentMessage:
    chat_id: int
    message: Message


class FakeNotifier:
    """Records delivered messages per chat.

    ``block(chat_id)`` makes sends to that chat raise RecipientUnreachableError (the user
    blocked the bot); ``rate_limit_once(retry_after)`` makes the next send (to *chat_id*,
    or to anyone) raise RetryLaterError once. Refused sends are not recorded as sent.
    """

    def __init__(self) -> None:
        self.sent: list[SentMessage] = []
        self.attempts = 0
        self.blocked: set[int] = set()
        self._retry_once: dict[int | None, float] = {}

    async def send(self, chat_id: int, message: Message) -> None:
        self.attempts += 1
        if chat_id in self.blocked:
            raise RecipientUnreachableError(f"chat {chat_id} blocked the bot")
        for key in (chat_id, None):
            if key in self._retry_once:
                raise RetryLaterError(self._retry_once.pop(key))
        self.sent.append(SentMessage(chat_id, message))

    def block(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked.discard(chat_id)

    def rate_limit_once(self, retry_after: float = 1.0, chat_id: int | None = None) -> None:
        self._retry_once[chat_id] = retry_after

    def messages(self, chat_id: int) -> list[Message]:
        return [s.message for s in self.sent if s.chat_id == chat_id]

    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.messages(chat_id)]


if TYPE_CHECKING:
    _notifier: Notifier = FakeNotifier()
