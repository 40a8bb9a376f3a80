"""A Telegram user, driven by a test: what they type, tap and pay, and what they read.

Every action queues the update the real Telegram would send and returns at once; the bot
answers asynchronously, so a test waits with :meth:`TgUser.reply` (the first bot message
sent or edited after the user's last action) or :meth:`TgUser.wait_until`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from vpnshop.testing.telegram.markup import InlineButton, reply_keyboard_labels
from vpnshop.testing.telegram.state import (
    Account,
    CallbackQuery,
    Chat,
    ChatMessage,
    PreCheckout,
    StarPayment,
    now_ts,
)

if TYPE_CHECKING:
    from vpnshop.testing.telegram.server import TelegramEmulator

_DEEP_LINK = re.compile(r"[A-Za-z0-9_-]{1,64}")


@attrs.frozen
class PaymentResult:
    """How paying an invoice went: refused at pre-checkout (``ok`` False, with the bot's
    ``error_message``) or paid (``charge_id`` and the ``successful_payment`` message)."""

    ok: bool
    pre_checkout: PreCheckout
    charge_id: str | None = None
    message: ChatMessage | None = None
    error_message: str | None = None


class TgUser:
    """One user of the emulated Telegram (see the module docstring)."""

    def __init__(self, emu: TelegramEmulator, account: Account) -> None:
        self.emu = emu
        self.account = account
        self._since = 0

    @property
    def id(self) -> int:
        return self.account.id

    @property
    def chat(self) -> Chat:
        return self.emu.private_chat(self.account)

    # -- reading the chat -------------------------------------------------------------

    def messages(self) -> list[ChatMessage]:
        """Every message still in the chat (deleted ones left out), oldest first."""
        return self.chat.visible()

    def bot_messages(self) -> list[ChatMessage]:
        return [m for m in self.messages() if m.from_bot]

    @property
    def last(self) -> ChatMessage:
        """The newest bot message still in the chat."""
        sent = self.bot_messages()
        if not sent:
            raise AssertionError(f"the bot has sent user {self.id} nothing")
        return sent[-1]

    def texts(self) -> list[str]:
        """The text or caption of each bot message still in the chat."""
        return [m.text or m.caption or "" for m in self.bot_messages()]

    def photo_bytes(self, message: ChatMessage | None = None) -> bytes:
        """The image of *message* (default: the newest bot message with a photo)."""
        if message is None:
            photos = [m for m in self.bot_messages() if m.photo_file_id]
            if not photos:
                raise AssertionError(f"the bot has sent user {self.id} no photo")
            message = photos[-1]
        if message.photo_file_id is None:
            raise AssertionError(f"message {message.message_id} has no photo")
        return self.emu.file_bytes(message.photo_file_id)

    def replies(self) -> list[ChatMessage]:
        """Bot messages sent or edited since the user's last action, in that order."""
        changed = [m for m in self.chat.messages.values() if m.from_bot and m.version > self._since]
        return sorted(changed, key=lambda m: m.version)

    async def reply(self, within: float = 5.0) -> ChatMessage:
        """The first bot message sent or edited after the user's last action."""
        await self.wait_until(lambda: bool(self.replies()), within, "a reply from the bot")
        return self.replies()[0]

    async def wait_until(
        self, condition: Callable[[], bool], within: float = 5.0, what: str = "the condition"
    ) -> None:
        """Wait until *condition* holds, re-checking on every change to the chat."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self.chat.wait_change(self.chat.version, remaining):
                if condition():
                    return
                raise AssertionError(
                    f"user {self.id} waited {within} s for {what}; chat: {self.texts()!r}"
                )

    # -- acting -----------------------------------------------------------------------

    def _message(self, **fields: Any) -> ChatMessage:
        if self.account.blocked:  # writing to a blocked bot unblocks it, as on Telegram
            self.account.blocked = False
            self._member_update("kicked", "member")
        self.account.started = True
        chat = self.chat
        self._since = chat.version
        message = ChatMessage(
            message_id=chat.new_message_id(),
            chat_id=chat.id,
            from_bot=False,
            date=now_ts(),
            sender=self.account.to_json(),
            **fields,
        )
        chat.add(message)
        self.emu.feed.push({"message": self.emu.message_json(chat, message.message_id)})
        return message

    async def send(self, text: str) -> ChatMessage:
        """Type *text*; a leading ``/command`` carries its ``bot_command`` entity."""
        entities: list[dict[str, Any]] = []
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": len(command)})
        return self._message(text=text, entities=entities)

    async def start(self, payload: str | None = None) -> ChatMessage:
        """Open the bot, through a deep link ``t.me/<bot>?start=<payload>`` if given.
        Telegram only makes such links for 1-64 characters of ``A-Za-z0-9_-``."""
        if payload is not None and not _DEEP_LINK.fullmatch(payload):
            raise AssertionError(f"Telegram has no deep link with payload {payload!r}")
        return await self.send(f"/start {payload}" if payload else "/start")

    async def tap(self, label: str) -> ChatMessage:
        """Tap *label* on the custom (reply) keyboard shown now: it sends *label* as text;
        an AssertionError names the labels there are when it is not on the keyboard."""
        labels = reply_keyboard_labels(self.chat.reply_keyboard)
        if label not in labels:
            raise AssertionError(f"no key {label!r} on user {self.id}'s keyboard: {labels!r}")
        return await self.send(label)

    async def redeliver(self, message: ChatMessage) -> None:
        """Queue *message* again as a new update, as Telegram does after a lost answer."""
        self._since = self.chat.version
        self.emu.feed.push({"message": self.emu.message_json(self.chat, message.message_id)})

    def button(self, label: str, message: ChatMessage | None = None) -> InlineButton:
        """The inline button *label* of *message* (default: the newest bot message, as
        a user sees it at the bottom of the chat); an AssertionError names the buttons
        there are instead."""
        message = self.last if message is None else message
        for row in message.buttons:
            for button in row:
                if button.text == label:
                    return button
        raise AssertionError(
            f"no button {label!r} on message {message.message_id} "
            f"({(message.text or message.caption or '')[:60]!r}); "
            f"its buttons: {message.button_labels!r}"
        )

    async def press(self, label: str, message: ChatMessage | None = None) -> CallbackQuery:
        """Tap the inline button *label* of *message* (default: the newest bot message);
        returns the callback query, whose ``done`` event is set when the bot answers it."""
        message = self.last if message is None else message
        button = self.button(label, message)
        if button.callback_data is None:
            raise AssertionError(f"button {label!r} is not a callback button: {button!r}")
        return await self.press_data(button.callback_data, message)

    async def press_data(self, data: str, message: ChatMessage) -> CallbackQuery:
        """Send a callback query with *data* on *message*, as a forged client could."""
        chat = self.chat
        self._since = chat.version
        query = CallbackQuery(
            id=self.emu.new_id(f"{self.id}-cq"),
            user_id=self.id,
            chat_id=chat.id,
            message_id=message.message_id,
            data=data,
            created=asyncio.get_running_loop().time(),
        )
        self.emu.callback_queries[query.id] = query
        self.emu.feed.push(
            {
                "callback_query": {
                    "id": query.id,
                    "from": self.account.to_json(),
                    "message": self.emu.message_json(chat, message.message_id),
                    "chat_instance": str(chat.id),
                    "data": data,
                }
            }
        )
        return query

    async def pay(
        self,
        message: ChatMessage | None = None,
        *,
        total_amount: int | None = None,
        payload: str | None = None,
        within: float | None = None,
    ) -> PaymentResult:
        """Pay the invoice *message* (default: the newest): a pre_checkout_query, then,
        when the bot says ok, a message with successful_payment. *total_amount* and
        *payload* override the invoice's, to play a tampered client."""
        invoice, own_payload = self._invoice(message)
        amount = invoice["total_amount"] if total_amount is None else total_amount
        return await self._checkout(
            invoice["currency"], amount, own_payload if payload is None else payload, within
        )

    def _invoice(self, message: ChatMessage | None) -> tuple[dict[str, Any], str]:
        """The invoice of *message* (default: the bot's newest) and its payload."""
        if message is None:
            invoices = [m for m in self.bot_messages() if m.invoice is not None]
            if not invoices:
                raise AssertionError(f"the bot has sent user {self.id} no invoice")
            message = invoices[-1]
        if message.invoice is None or message.invoice_payload is None:
            raise AssertionError(f"message {message.message_id} is not an invoice")
        return message.invoice, message.invoice_payload

    async def pay_link(self, link: str, *, within: float | None = None) -> PaymentResult:
        """Pay an invoice link made by createInvoiceLink."""
        invoice = self.emu.invoice_links[link.rsplit("$", 1)[-1]]
        return await self._checkout(invoice.currency, invoice.total_amount, invoice.payload, within)

    async def pay_twice(self, message: ChatMessage | None = None) -> list[PaymentResult]:
        """Pay the invoice *message* (default: the newest) from two devices at once: both
        pre_checkout_queries are sent and answered before either successful_payment, so
        the bot, told ok twice while the order is open, is charged twice."""
        invoice, payload = self._invoice(message)
        currency, amount = invoice["currency"], invoice["total_amount"]
        limit = self.emu.pre_checkout_timeout
        self._since = self.chat.version
        queries = [self._pre_checkout(currency, amount, payload) for _ in range(2)]
        await asyncio.gather(*(self._answered(q, limit) for q in queries))
        return [self._charged(q) for q in queries]

    async def _checkout(
        self, currency: str, amount: int, payload: str, within: float | None
    ) -> PaymentResult:
        self._since = self.chat.version
        query = self._pre_checkout(currency, amount, payload)
        limit = self.emu.pre_checkout_timeout if within is None else within
        await self._answered(query, limit)
        return self._charged(query)

    def _pre_checkout(self, currency: str, amount: int, payload: str) -> PreCheckout:
        query = PreCheckout(
            id=self.emu.new_id(f"{self.id}-pcq"),
            user_id=self.id,
            currency=currency,
            total_amount=amount,
            payload=payload,
            created=asyncio.get_running_loop().time(),
        )
        self.emu.pre_checkouts[query.id] = query
        self.emu.feed.push(
            {
                "pre_checkout_query": {
                    "id": query.id,
                    "from": self.account.to_json(),
                    "currency": currency,
                    "total_amount": amount,
                    "invoice_payload": payload,
                }
            }
        )
        return query

    @staticmethod
    async def _answered(query: PreCheckout, limit: float) -> None:
        try:
            await asyncio.wait_for(query.done.wait(), limit)
        except TimeoutError:
            raise AssertionError(
                f"the bot did not answer pre_checkout_query {query.id} within {limit} s"
            ) from None

    def _charged(self, query: PreCheckout) -> PaymentResult:
        """Telegram's successful_payment for *query* when the bot said ok."""
        if not query.ok:
            return PaymentResult(False, query, error_message=query.error_message)
        currency, amount, payload = query.currency, query.total_amount, query.payload
        charge_id = self.emu.new_id("stxTESTcharge")
        self.emu.star_payments[charge_id] = StarPayment(
            charge_id, self.id, currency, amount, payload
        )
        paid = self._message(
            extra={
                "successful_payment": {
                    "currency": currency,
                    "total_amount": amount,
                    "invoice_payload": payload,
                    "telegram_payment_charge_id": charge_id,
                    "provider_payment_charge_id": "",
                }
            }
        )
        return PaymentResult(True, query, charge_id, paid)

    async def refunded(self, charge_id: str) -> ChatMessage:
        """Telegram's refunded_payment service message for *charge_id* (e.g. after a
        refund made through support rather than by the bot)."""
        payment = self.emu.star_payments[charge_id]
        payment.refunded = True
        return self._message(
            extra={
                "refunded_payment": {
                    "currency": payment.currency,
                    "total_amount": payment.total_amount,
                    "invoice_payload": payment.payload,
                    "telegram_payment_charge_id": charge_id,
                }
            }
        )

    def _member_update(self, old: str, new: str) -> None:
        self._since = self.chat.version
        bot = self.emu.bot_user
        new_member: dict[str, Any] = {"user": bot, "status": new}
        if new == "kicked":
            new_member["until_date"] = 0
        old_member: dict[str, Any] = {"user": bot, "status": old}
        if old == "kicked":
            old_member["until_date"] = 0
        self.emu.feed.push(
            {
                "my_chat_member": {
                    "chat": self.emu.chat_json(self.chat),
                    "from": self.account.to_json(),
                    "date": now_ts(),
                    "old_chat_member": old_member,
                    "new_chat_member": new_member,
                }
            }
        )

    async def block(self) -> None:
        """Block the bot: sends to this user now answer 403, and the bot hears of it."""
        self.account.blocked = True
        self._member_update("member", "kicked")

    async def unblock(self) -> None:
        """Unblock the bot (Telegram sends my_chat_member back to ``member``)."""
        self.account.blocked = False
        self.account.started = True
        self._member_update("kicked", "member")

    async def deactivate(self) -> None:
        """Delete the account: sends answer 403 "Forbidden: user is deactivated"."""
        self.account.deactivated = True
