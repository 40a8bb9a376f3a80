"""A customer the demo drives: the emulator's Telegram user, with each action written to
the transcript and waits that name what they wait for."""

from __future__ import annotations

import attrs

from vpnshop.bootstrap import App
from vpnshop.demo.steps import check
from vpnshop.demo.transcript import Transcript
from vpnshop.domain.payment import Payment
from vpnshop.domain.subscription import Subscription
from vpnshop.testing.telegram import ChatMessage, TgUser

WAIT = 15.0  # seconds for the bot, the outbox or a webhook to show their effect


@attrs.define
class Customer:
    user: TgUser
    app: App
    transcript: Transcript
    mark: int = 0  # the chat's version when the last action was taken

    @property
    def name(self) -> str:
        return self.user.account.first_name

    async def send(self, text: str) -> ChatMessage:
        self.transcript.action(self.user, f"types {text!r}")
        self.mark = self.user.chat.version
        await self.user.send(text)
        return await self.answer()

    async def start(self, payload: str | None = None) -> ChatMessage:
        shown = f"/start {payload}" if payload else "/start"
        self.transcript.action(self.user, f"opens the bot ({shown})")
        self.mark = self.user.chat.version
        await self.user.start(payload)
        return await self.answer()

    async def press(self, label: str, message: ChatMessage | None = None) -> ChatMessage:
        self.transcript.action(self.user, f"taps [{label}]")
        # The newest message with that button: a notice below it does not hide it.
        pressed = message or next(
            (
                m
                for m in sorted(self.user.bot_messages(), key=lambda m: -m.message_id)
                if label in m.button_labels
            ),
            self.user.last,
        )
        self.mark = self.user.chat.version
        await self.user.press(label, pressed)
        return await self.answer(pressed.message_id)

    async def answer(self, pressed: int | None = None) -> ChatMessage:
        """The bot's answer to the last action: the pressed message edited, or a new
        message with buttons or an invoice. A notice the outbox sends meanwhile (a
        reminder, say) has neither, so it is not taken for the answer."""

        def answer() -> ChatMessage | None:
            for m in self.user.replies():
                if m.message_id == pressed or m.buttons or m.invoice is not None:
                    return m
            return None

        try:
            await self.user.wait_until(lambda: answer() is not None, WAIT, "the bot's answer")
        except AssertionError:
            check(False, f"the bot did not answer {self.name} within {WAIT:.0f} s")
        found = answer()
        assert found is not None
        return found

    async def menu(self) -> ChatMessage:
        return await self.send("/menu")

    async def sees(self, text: str, what: str) -> ChatMessage:
        """The bot message with *text* sent or edited since the last action; waits."""

        def found() -> ChatMessage | None:
            return next(
                (
                    m
                    for m in sorted(self.user.chat.messages.values(), key=lambda m: m.version)
                    if m.from_bot and m.version > self.mark and text in (m.text or "")
                ),
                None,
            )

        try:
            await self.user.wait_until(lambda: found() is not None, WAIT, what)
        except AssertionError:
            check(False, f"{self.name} never saw {what} ({text!r}) within {WAIT:.0f} s")
        message = found()
        assert message is not None
        return message

    def external(self) -> None:
        """Something happened outside the chat (a payment page, the clock): what the bot
        says next counts as an answer to it."""
        self.transcript.catch_up(self.user)
        self.mark = self.user.chat.version

    async def customer_id(self) -> int:
        async with self.app.deps.uow() as uow:
            customer = await uow.customers.by_telegram_id(self.user.id)
        check(customer is not None and customer.id is not None, f"{self.name} is a customer")
        assert customer is not None
        assert customer.id is not None
        return customer.id

    async def subscription(self) -> Subscription:
        cid = await self.customer_id()
        async with self.app.deps.uow() as uow:
            subs = await uow.subscriptions.for_customer(cid)
        check(len(subs) == 1, f"{self.name} has one subscription (has {len(subs)})")
        return subs[0]

    async def latest_payment(self) -> Payment:
        cid = await self.customer_id()
        async with self.app.deps.uow() as uow:
            payments = await uow.payments.recent(1, customer_id=cid)
        check(bool(payments), f"{self.name} has a payment")
        return payments[0]

    async def payment(self, payment_id: str) -> Payment:
        async with self.app.deps.uow() as uow:
            payment = await uow.payments.get(payment_id)
        check(payment is not None, f"payment {payment_id} exists")
        assert payment is not None
        return payment
