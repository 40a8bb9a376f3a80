"""What the emulated Telegram remembers: users, chats with their message history, files,
callback queries, pre-checkout queries and Stars payments."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs

from vpnshop.testing.telegram.markup import InlineButton, inline_buttons, reply_keyboard_labels


def now_ts() -> int:
    return int(time.time())


@attrs.define
class Account:
    """A Telegram user. ``started``: they have opened a private chat with the bot."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"
    is_premium: bool = False
    started: bool = False
    blocked: bool = False
    deactivated: bool = False

    def to_json(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        if self.is_premium:
            user["is_premium"] = True
        return user


@attrs.define
class ChatMessage:
    """One message of a chat, kept after deletion (``deleted``) and across edits."""

    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    sender: dict[str, Any]
    text: str | None = None  # plain text as the user reads it
    source: str | None = None  # text or caption as the bot sent it (HTML before parsing)
    entities: list[dict[str, Any]] = attrs.field(factory=list)
    caption: str | None = None
    reply_markup: dict[str, Any] | None = None
    photo_file_id: str | None = None
    invoice: dict[str, Any] | None = None
    invoice_payload: str | None = None  # never shown to the user, so not in to_json
    extra: dict[str, Any] = attrs.field(factory=dict)  # successful_payment and the like
    edit_date: int | None = None
    previous_texts: list[str] = attrs.field(factory=list)
    deleted: bool = False
    version: int = 0  # the chat's version when this message last changed

    @property
    def buttons(self) -> list[list[InlineButton]]:
        return inline_buttons(self.reply_markup)

    @property
    def button_labels(self) -> list[str]:
        return [b.text for row in self.buttons for b in row]

    @property
    def keyboard_labels(self) -> list[str]:
        return reply_keyboard_labels(self.reply_markup)

    @property
    def successful_payment(self) -> dict[str, Any] | None:
        return self.extra.get("successful_payment")

    def to_json(self, chat: dict[str, Any], photo: list[dict[str, Any]] | None) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self.sender,
            "chat": chat,
            "date": self.date,
        }
        if self.edit_date is not None:
            msg["edit_date"] = self.edit_date
        if photo is not None:
            msg["photo"] = photo
            if self.caption:
                msg["caption"] = self.caption
                if self.entities:
                    msg["caption_entities"] = self.entities
        elif self.text is not None:
            msg["text"] = self.text
            if self.entities:
                msg["entities"] = self.entities
        if self.invoice is not None:
            msg["invoice"] = self.invoice
        if self.reply_markup is not None and "inline_keyboard" in self.reply_markup:
            msg["reply_markup"] = self.reply_markup
        msg.update(self.extra)
        return msg


@attrs.define
class Chat:
    """A chat: a user's private chat with the bot, a group or a channel."""

    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    messages: dict[int, ChatMessage] = attrs.field(factory=dict)
    members: dict[int, str] = attrs.field(factory=dict)  # user id -> status (channels)
    migrated_to: int | None = None
    reply_keyboard: dict[str, Any] | None = None  # the custom keyboard the user sees now
    next_message_id: int = 1
    version: int = 0  # bumped on every change, so that tests can wait for one
    _changed: asyncio.Event | None = None

    def to_json(self, account: Account | None = None) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": self.type}
        if account is not None:
            chat["first_name"] = account.first_name
            if account.last_name:
                chat["last_name"] = account.last_name
            if account.username:
                chat["username"] = account.username
        else:
            if self.title:
                chat["title"] = self.title
            if self.username:
                chat["username"] = self.username
        return chat

    def add(self, message: ChatMessage) -> ChatMessage:
        self.messages[message.message_id] = message
        self.touch(message)
        return message

    def new_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    def touch(self, message: ChatMessage | None = None) -> None:
        self.version += 1
        if message is not None:
            message.version = self.version
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_change(self, since: int, within: float) -> bool:
        """Wait until ``version`` exceeds *since*; False when *within* seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.version <= since:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self.version > since
        return True

    def visible(self) -> list[ChatMessage]:
        return [m for m in self.messages.values() if not m.deleted]


@attrs.define
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes | None  # None for a photo given by URL, which the emulator never fetches
    url: str | None = None
    width: int = 0
    height: int = 0


@attrs.define
class CallbackQuery:
    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str | None
    created: float  # loop time
    answered: bool = False
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    done: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define
class PreCheckout:
    id: str
    user_id: int
    currency: str
    total_amount: int
    payload: str
    created: float
    answered: bool = False
    ok: bool | None = None
    error_message: str | None = None
    done: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define
class StarPayment:
    """A paid invoice, as Telegram keeps it for refunds."""

    telegram_payment_charge_id: str
    user_id: int
    currency: str
    total_amount: int
    payload: str
    refunded: bool = False
    subscription_canceled: bool = False


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, (0, 0) for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 0, 0
