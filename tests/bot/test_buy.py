"""Buy or extend through the bot, end to end: the Telegram emulator, the whole
dispatcher, the App on a real database, the provider emulators notifying the webhook
server, the outbox, and the Remnawave emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tests.bot.money import BUY, MONTH, MoneyShop, money_shop
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.testing.telegram import TgUser


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[MoneyShop]:
    """The bot with every provider (SQLite, and PostgreSQL where the fixture runs it)."""
    async with money_shop(database_url) as s:
        yield s


async def open_quote(user: TgUser, plan: str = MONTH) -> None:
    await user.press(BUY)
    await user.reply()
    await user.press(plan)
    await user.reply()


async def assert_linked(shop: MoneyShop, user: TgUser) -> None:
    """The outbox ran: the chat ends with "paid, active until" and the link, and the
    panel user's expiry is the subscription's."""
    await shop.bot.run_outbox()
    cid = await shop.bot.customer_id(user.id)
    async with shop.bot.app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(cid)
    assert len(subs) == 1
    sub = subs[0]
    assert sub.panel_key is not None and sub.subscription_url
    await user.wait_until(lambda: sub.subscription_url in user.last.text, what="the link")
    assert "active until" in user.last.text
    assert shop.bot.app.panel is not None
    panel_user = await shop.bot.app.panel.get(sub.panel_key)
    assert panel_user is not None
    # the panel keeps milliseconds
    assert abs(panel_user.expires_at - sub.expires_at) < timedelta(milliseconds=1)


async def test_plans_and_quote_show_server_prices_and_methods(shop: MoneyShop) -> None:
    """The plans show each currency someone can pay in; the quote offers every provider
    whose currency and limits fit, Stars for the XTR price, and not an empty balance."""
    alice = await shop.started(1001)
    await alice.press(BUY)
    plans = await alice.reply()
    assert "1 month: 199.00 RUB / 130 XTR" in plans.text
    await alice.press(MONTH)
    quote = await alice.reply()
    labels = quote.button_labels
    assert "⭐ Telegram Stars: 130 XTR" in labels
    assert "💳 Card (YooKassa): 199.00 RUB" in labels
    assert not any("balance" in label for label in labels)


async def test_balance_purchase_pays_once_and_sends_the_link(shop: MoneyShop) -> None:
    """Pay from balance: confirmation, one debit, then "paid, active until" with the link
    and the panel user's expiry matching the subscription."""
    alice = await shop.started(1001)
    await shop.credit(alice.id, Money(50000, RUB))
    await open_quote(alice)
    await alice.press("👛 From balance: 199.00 RUB")
    assert "from your balance" in (await alice.reply()).text
    await alice.press("✅ Pay")
    assert "Paid 199.00 RUB" in (await alice.reply()).text
    await assert_linked(shop, alice)
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        balance = await uow.ledger.balance(cid, RUB)
    assert balance == Money(30100, RUB)
    assert await shop.bot.app.verify_ledger() == []


async def test_ten_concurrent_taps_on_pay_from_balance_pay_once(shop: MoneyShop) -> None:
    """One user's ten concurrent taps on "pay from balance" make one payment and one debit."""
    alice = await shop.started(1001)
    await shop.credit(alice.id, Money(50000, RUB))
    await open_quote(alice)
    await alice.press("👛 From balance: 199.00 RUB")
    confirm = await alice.reply()
    queries = [await alice.press("✅ Pay", confirm) for _ in range(10)]
    await asyncio.wait_for(asyncio.gather(*(q.done.wait() for q in queries)), 10)
    await alice.wait_until(lambda: "Paid 199.00 RUB" in alice.last.text)
    paid = [p for p in await shop.payments(alice.id) if p.status is PaymentStatus.SUCCEEDED]
    assert len(paid) == 1
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        balance = await uow.ledger.balance(cid, RUB)
    assert balance == Money(30100, RUB)
    assert await shop.bot.app.verify_ledger() == []


async def test_stars_purchase_is_credited_once_and_sends_the_link(shop: MoneyShop) -> None:
    """Stars: the invoice is XTR with one price and a payload naming our payment; paying
    it confirms through the core and the link arrives."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press("⭐ Telegram Stars: 130 XTR")
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()), what="invoice")
    invoice = [m for m in alice.bot_messages() if m.invoice][-1]
    assert invoice.invoice is not None
    assert invoice.invoice["currency"] == "XTR" and invoice.invoice["total_amount"] == 130
    assert invoice.invoice_payload is not None and "130" not in invoice.invoice_payload
    result = await alice.pay(invoice)
    assert result.ok
    await alice.wait_until(lambda: "Payment received" in (alice.last.text or ""))
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.external_id == result.charge_id
    await assert_linked(shop, alice)


@pytest.mark.parametrize(
    ("label", "provider"),
    [
        ("💳 Card (YooKassa): 199.00 RUB", "yookassa"),
        ("🪙 Crypto (CryptoBot): 199.00 RUB", "cryptopay"),
        ("💳 FreeKassa: 199.00 RUB", "freekassa"),
    ],
)
async def test_provider_purchase_through_the_bot(
    shop: MoneyShop, label: str, provider: str
) -> None:
    """A provider's checkout URL from the bot, paid at the emulator, notified to the
    webhook server, ends with the link in the chat and the panel user's expiry."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(label)
    checkout = await alice.reply()
    assert "press the button below" in checkout.text
    assert checkout.buttons[0][0].url
    [payment] = await shop.payments(alice.id)
    assert payment.provider == provider and payment.external_id
    if provider == "yookassa":
        await shop.yookassa.pay(payment.external_id)
    elif provider == "cryptopay":
        await shop.cryptopay.pay(payment.external_id)
    else:
        await shop.freekassa.pay(payment.external_id)
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    await alice.press("I have paid: check", checkout)
    assert "has gone through" in (await alice.reply()).text
    await assert_linked(shop, alice)


async def test_tribute_offers_its_configured_link(shop: MoneyShop) -> None:
    """Tribute is provider-run: the button opens the product link from the settings."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press("💳 Tribute: 199.00 RUB")
    checkout = await alice.reply()
    assert checkout.buttons[0][0].url == shop.tribute.web_app_link("sMONTH")


def test_longest_buttons_fit_in_64_bytes() -> None:
    """With the longest plan code and a large subscription id, every money button's
    callback data stays within Telegram's 64 bytes."""
    from vpnshop_bot.keyboards.buy import BalanceOk, PayWith

    plan, sub = "p" * 32, 9_999_999
    for data in (
        PayWith(plan=plan, sub=sub, p="freekassa", cur="RUB", tag="abcdef"),
        BalanceOk(plan=plan, sub=sub, cur="RUB", tag="abcdef", n="0123abcd"),
    ):
        assert len(data.pack().encode()) <= 64
