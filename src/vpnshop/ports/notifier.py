"""The notifier port: messages to customers and to the admins' log chat."""

from __future__ import annotations

from typing import Protocol

import attrs

from vpnshop.domain.errors import DomainError, ValidationError


class NotifierError(DomainError):
    code = "notifier_error"


class RecipientUnreachableError(NotifierError):
    """The user blocked the bot or is deactivated: stop sending to them."""

    code = "recipient_unreachable"


class RetryLaterError(NotifierError):
    """Rate limited: wait ``retry_after`` seconds, exactly."""

    code = "retry_later"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class MessageRejectedError(NotifierError, ValidationError):
    """Telegram refused this message itself (bad markup, text too long, chat not found):
    sending it again cannot help, so the outbox parks the job with this reason (it is a
    ValidationError for that)."""

    code = "message_rejected"


class NotifierUnavailableError(NotifierError):
    """Telegram could not be reached, failed on its side, or refused the bot itself (a
    wrong token): nothing is wrong with the message; retry later with backoff."""

    code = "notifier_unavailable"


@attrs.frozen
class Button:
    text: str
    url: str | None = None
    callback: str | None = None  # at most 64 bytes; names what to look up, never a price


@attrs.frozen
class Message:
    """A message to send: text (HTML), optional buttons (rows), optional PNG image."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    image_png: bytes | None = None


class Notifier(Protocol):
    async def send(self, chat_id: int, message: Message) -> None:
        """Send *message*. Not idempotent (a retry may repeat it). Raises
        RecipientUnreachableError (stop writing to this chat), RetryLaterError (wait exactly
        ``retry_after``), MessageRejectedError (permanent) or NotifierUnavailableError."""
        ...
