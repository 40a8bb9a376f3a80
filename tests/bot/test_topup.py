"""Top-up of the balance through the bot: presets, a typed amount with a precise message
for each kind of bad input, and a provider payment that credits the ledger once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.bot.money import MoneyShop, money_shop
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop_bot.keyboards.buy import TopAmount, TopPay

TOPUP = "💳 Top up balance"


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[MoneyShop]:
    """The bot with every provider (SQLite, and PostgreSQL where the fixture runs it)."""
    async with money_shop(database_url) as s:
        yield s


async def test_typed_amounts_get_precise_messages(shop: MoneyShop) -> None:
    """A non-number, too small and too large each get their own message and the form
    stays open; a good amount shows the providers that take it (never the balance)."""
    alice = await shop.started(1001)
    await alice.press(TOPUP)
    await alice.reply()
    await alice.press("Another amount")
    assert "from 50.00 RUB to 50000.00 RUB" in ((await alice.reply()).text or "")
    await alice.send("lots")
    assert "That is not an amount" in ((await alice.reply()).text or "")
    await alice.send("10")
    assert "the minimum top-up is 50.00 RUB" in ((await alice.reply()).text or "")
    await alice.send("1000000")
    assert "the maximum top-up is 50000.00 RUB" in ((await alice.reply()).text or "")
    await alice.send("250,50")
    methods = await alice.reply()
    assert "Top-up of 250.50 RUB" in (methods.text or "")
    assert "💳 Card (YooKassa): 250.50 RUB" in methods.button_labels
    assert not any("balance" in label for label in methods.button_labels)
    assert not any("Stars" in label for label in methods.button_labels)
    assert await shop.payments(alice.id) == []


async def test_russian_user_gets_the_messages_in_russian(shop: MoneyShop) -> None:
    """The typed-amount messages are in the customer's language."""
    ivan = await shop.started(3001, "Ivan", language_code="ru")
    await ivan.press("💳 Пополнить баланс")
    await ivan.reply()
    await ivan.press("Другая сумма")
    await ivan.reply()
    await ivan.send("abc")
    assert "Это не сумма" in ((await ivan.reply()).text or "")


async def test_preset_top_up_through_yookassa_credits_once(shop: MoneyShop) -> None:
    """A preset amount paid at YooKassa credits the balance once through the ledger."""
    alice = await shop.started(1001)
    await alice.press(TOPUP)
    await alice.reply()
    await alice.press("300.00 RUB")
    await alice.reply()
    await alice.press("💳 Card (YooKassa): 300.00 RUB")
    checkout = await alice.reply()
    assert checkout.buttons[0][0].url
    [payment] = await shop.payments(alice.id)
    assert payment.external_id is not None
    await shop.yookassa.pay(payment.external_id)
    await shop.yookassa.pay(payment.external_id)  # a second notification changes nothing
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(30000, RUB)
    assert await shop.bot.app.verify_ledger() == []


async def test_forged_top_up_buttons_change_nothing(shop: MoneyShop) -> None:
    """An amount that is no preset, out of range, or a provider that does not take it,
    sent as forged callback data, is refused and stores nothing."""
    alice = await shop.started(1001)
    for data in (
        TopAmount(a=12345).pack(),
        TopPay(a=1, p="yookassa").pack(),
        TopPay(a=10_000_000_000, p="yookassa").pack(),
        TopPay(a=30000, p="stars").pack(),
        TopPay(a=30000, p="balance").pack(),
    ):
        await alice.send("/menu")
        await alice.reply()
        query = await alice.press_data(data, alice.last)
        await asyncio.wait_for(query.done.wait(), 5)
        await alice.reply()
    assert await shop.payments(alice.id) == []
