"""Hostile and odd input on the money journeys, each changing nothing: forged, foreign
and over-long callback data, a price changed since the quote, a tampered invoice
payload, a pre-checkout with a wrong amount, successful_payment replayed ten times at
once, and a refund update delivered twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import attrs
import pytest

from tests.bot.money import BUY, MONTH, MoneyShop, money_shop
from tests.bot.test_buy import open_quote
from vpnshop.bootstrap import bootstrap
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, XTR, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.testing.telegram import TgUser
from vpnshop_bot.dispatcher import build_dispatcher
from vpnshop_bot.keyboards.buy import BalanceOk, Buy, PayCheck, PayWith
from vpnshop_bot.serve import make_bot

STARS = "⭐ Telegram Stars: 130 XTR"


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[MoneyShop]:
    """The bot with every provider (SQLite, and PostgreSQL where the fixture runs it)."""
    async with money_shop(database_url) as s:
        yield s


async def sent(user: TgUser, data: str) -> str:
    """Press a button with forged *data* under a fresh menu; the bot's answer."""
    await user.send("/menu")
    await user.reply()
    query = await user.press_data(data, user.last)
    await asyncio.wait_for(query.done.wait(), 5)
    return (await user.reply()).text or ""


async def test_forged_tag_and_unknown_plan_change_nothing(shop: MoneyShop) -> None:
    """A method button with a forged quote tag, or naming an unknown plan, is refused
    with a clear message and stores no payment."""
    alice = await shop.started(1001)
    await shop.credit(alice.id, Money(50000, RUB))
    before = await shop.snapshot()
    forged = PayWith(plan="month", sub=0, p="yookassa", cur="RUB", tag="000000").pack()
    assert "price has changed" in await sent(alice, forged)
    ok = BalanceOk(plan="month", sub=0, cur="RUB", tag="deadbe", n="abc123").pack()
    assert "price has changed" in await sent(alice, ok)
    assert "no longer on sale" in await sent(alice, Buy(plan="nosuch", sub=0).pack())
    assert await shop.snapshot() == before
    assert await shop.payments(alice.id) == []


async def test_price_changed_since_the_quote_is_refused(shop: MoneyShop) -> None:
    """A quote shown before the plan's price changed cannot be paid at the old price."""
    alice = await shop.started(1001)
    await open_quote(alice)
    quote = alice.last
    dearer = {"RUB": Money(25000, RUB), "XTR": Money(130, XTR)}
    plans = [
        attrs.evolve(p, prices=dearer) if p.code == "month" else p for p in load_plans_file(EXAMPLE)
    ]
    await shop.bot.app.load_plans(plans, actor=Actor.system("test"))
    await alice.press("💳 Card (YooKassa): 199.00 RUB", quote)
    assert "price has changed" in ((await alice.reply()).text or "")
    assert await shop.payments(alice.id) == []


async def test_foreign_subscription_and_payment_are_refused(shop: MoneyShop) -> None:
    """Buttons naming another customer's subscription or payment are refused as not
    this account's, and change nothing."""
    bob = await shop.started(2001, "Bob")
    await shop.credit(bob.id, Money(50000, RUB))
    await open_quote(bob)
    await bob.press("👛 From balance: 199.00 RUB")
    await bob.reply()
    await bob.press("✅ Pay")
    await bob.reply()
    [bob_payment] = await shop.payments(bob.id)
    cid = await shop.bot.customer_id(bob.id)
    async with shop.bot.app.deps.uow() as uow:
        [bob_sub] = await uow.subscriptions.for_customer(cid)
    assert bob_sub.id is not None
    alice = await shop.started(1001)
    await shop.credit(alice.id, Money(50000, RUB))
    before = await shop.snapshot()
    assert "not for your account" in await sent(alice, Buy(plan="month", sub=bob_sub.id).pack())
    assert "not for your account" in await sent(alice, PayCheck(pay=bob_payment.id).pack())
    assert await shop.snapshot() == before


async def test_over_long_and_garbage_callback_data_change_nothing(shop: MoneyShop) -> None:
    """Callback data over 64 bytes or not ours gets the stale-button answer, nothing else."""
    alice = await shop.started(1001)
    before = await shop.snapshot()
    for data in ("bw:" + "x" * 80, "bk:month:0:RUB", "by:month:notanumber", "pc:"):
        query = await alice.press_data(data, alice.last)
        await asyncio.wait_for(query.done.wait(), 5)
    assert await shop.snapshot() == before


async def test_tampered_payload_and_wrong_amount_are_refused_at_pre_checkout(
    shop: MoneyShop,
) -> None:
    """A pre-checkout with a payload that is not ours, another payment's, or another
    amount is refused with a reason in the user's language; nothing is credited."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(STARS)
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()))
    wrong = await alice.pay(total_amount=1)
    assert not wrong.ok and wrong.error_message == "The amount does not match the invoice."
    tampered = await alice.pay(payload="vs1:01NOTAPAYMENT")
    assert not tampered.ok and tampered.error_message == "This invoice is not valid any more."
    garbage = await alice.pay(payload="hello")
    assert not garbage.ok
    ivan = await shop.started(3001, "Ivan", language_code="ru")
    invoice = [m for m in alice.bot_messages() if m.invoice][-1]
    assert invoice.invoice_payload is not None
    foreign = await ivan._checkout("XTR", 130, invoice.invoice_payload, None)
    assert not foreign.ok and foreign.error_message == "Этот счёт выставлен другому аккаунту."
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.PENDING


async def test_successful_payment_replayed_ten_times_credits_once(shop: MoneyShop) -> None:
    """The same successful_payment delivered ten times at once extends the plan once."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(STARS)
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()))
    result = await alice.pay()
    assert result.ok and result.message is not None
    await alice.wait_until(lambda: "Payment received" in (alice.last.text or ""))
    for _ in range(10):
        await alice.redeliver(result.message)
    await asyncio.sleep(1.0)
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert sub.expires_at <= shop.bot.clock.now() + timedelta(days=30, minutes=1)
    texts = [t for t in alice.texts() if "Payment received" in t]
    assert len(texts) == 1


async def test_refunded_payment_is_applied_once(shop: MoneyShop) -> None:
    """A refunded_payment update marks the Stars payment refunded and takes the days
    back, once, however often it is delivered."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(STARS)
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()))
    result = await alice.pay()
    assert result.ok and result.charge_id is not None
    await alice.wait_until(lambda: "Payment received" in (alice.last.text or ""))
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        [paid_sub] = await uow.subscriptions.for_customer(cid)
    refund = await alice.refunded(result.charge_id)
    await alice.redeliver(refund)
    await asyncio.sleep(1.0)
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.REFUNDED
    async with shop.bot.app.deps.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
        refunds = [a for a in await uow.audit.recent(200) if a.action == "payment.refund"]
    assert len(refunds) == 1
    assert sub.expires_at < paid_sub.expires_at


async def test_buy_menu_is_in_russian_for_russian_users(shop: MoneyShop) -> None:
    """The plans screen speaks the customer's language, plan names included."""
    ivan = await shop.started(3001, "Ivan", language_code="ru")
    await ivan.press("🛒 Купить или продлить")
    plans = await ivan.reply()
    assert "1 месяц: 199.00 RUB / 130 XTR" in (plans.text or "")
    assert BUY not in plans.button_labels and MONTH not in plans.button_labels


async def test_admin_refund_of_stars_goes_through_refund_star_payment(shop: MoneyShop) -> None:
    """RefundPayment refunds a Stars payment with refundStarPayment for the payer and the
    charge; Telegram's refunded_payment that follows changes nothing more."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(STARS)
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()))
    result = await alice.pay()
    assert result.ok and result.charge_id is not None
    await alice.wait_until(lambda: "Payment received" in (alice.last.text or ""))
    [payment] = await shop.payments(alice.id)
    refund = await shop.bot.app.refund_payment(payment.id, admin=Actor.admin(1), reason="asked")
    assert not refund.to_balance
    [call] = shop.bot.tg.calls_of("refundStarPayment")
    assert call.params.integer("user_id") == alice.id
    assert call.params.string("telegram_payment_charge_id") == result.charge_id
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        [after_refund] = await uow.subscriptions.for_customer(cid)
    await alice.refunded(result.charge_id)
    await asyncio.sleep(0.5)
    async with shop.bot.app.deps.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    assert sub.expires_at == after_refund.expires_at
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.REFUNDED


async def test_two_replicas_receiving_the_same_payment_credit_once(shop: MoneyShop) -> None:
    """The first delivery of a successful_payment, fed at once to two bot processes'
    dispatchers (each its own App and database engine) five times each, extends the
    plan once and thanks the customer once."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(STARS)
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()))
    invoice = [m for m in alice.bot_messages() if m.invoice][-1]
    user = {"id": alice.id, "is_bot": False, "first_name": "Alice", "language_code": "en"}
    update = {
        "update_id": 10_000,
        "message": {
            "message_id": 999,
            "date": int(shop.bot.clock.now().timestamp()),
            "chat": {"id": alice.id, "type": "private", "first_name": "Alice"},
            "from": user,
            "successful_payment": {
                "currency": "XTR",
                "total_amount": 130,
                "invoice_payload": invoice.invoice_payload,
                "telegram_payment_charge_id": "stxTWOREPLICAS",
                "provider_payment_charge_id": "",
            },
        },
    }
    async with bootstrap(shop.bot.app.settings, clock=shop.bot.clock) as other:
        dps = [build_dispatcher(shop.bot.app), build_dispatcher(other)]
        bot = make_bot(shop.bot.tg.token, shop.bot.tg.api_url)
        try:
            await asyncio.gather(
                *(dp.feed_raw_update(bot, dict(update)) for dp in dps for _ in range(5))
            )
        finally:
            await bot.session.close()
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.external_id == "stxTWOREPLICAS"
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    assert sub.expires_at == shop.bot.clock.now() + timedelta(days=30)
    await alice.wait_until(lambda: "Payment received" in (alice.last.text or ""))
    assert sum("Payment received" in t for t in alice.texts()) == 1


async def test_an_invoice_paid_twice_at_once_gives_the_second_charge_back(
    shop: MoneyShop,
) -> None:
    """Two devices pay one Stars invoice at once: both pre-checkouts are answered while the
    order is open, and Telegram charges twice. The plan is extended once; the charge that
    did not pay goes back to the payer through refundStarPayment (once, however often its
    update comes, and Telegram's refunded_payment for it changes nothing), and the
    customer is told."""
    alice = await shop.started(1001)
    await open_quote(alice)
    await alice.press(STARS)
    await alice.wait_until(lambda: any(m.invoice for m in alice.bot_messages()))
    first, second = await alice.pay_twice()
    assert first.ok and second.ok
    assert first.message is not None and second.message is not None
    await alice.wait_until(lambda: "Payment received" in (alice.last.text or ""))
    paid_until = shop.bot.clock.now() + timedelta(days=30)
    await asyncio.sleep(0.5)  # the other charge's update, handled after the first
    await shop.bot.run_outbox()
    await alice.wait_until(lambda: any("returned to you" in t for t in alice.texts()))
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    [stray] = {first.charge_id, second.charge_id} - {payment.external_id}
    [call] = shop.bot.tg.calls_of("refundStarPayment")
    assert call.params.integer("user_id") == alice.id
    assert call.params.string("telegram_payment_charge_id") == stray
    assert shop.bot.tg.star_payments[stray].refunded
    assert not shop.bot.tg.star_payments[str(payment.external_id)].refunded

    # Both charges' updates again, and the refunded_payment Telegram sent: nothing more.
    await alice.redeliver(first.message)
    await alice.redeliver(second.message)
    await asyncio.sleep(0.5)
    await shop.bot.run_outbox()
    assert len(shop.bot.tg.calls_of("refundStarPayment")) == 1
    cid = await shop.bot.customer_id(alice.id)
    async with shop.bot.app.deps.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
        audit = await uow.audit.recent(200)
    assert sub.expires_at == paid_until
    assert [a.details["external_id"] for a in audit if a.action == "payment.stray_charge"] == [
        stray
    ]
    assert not [a for a in audit if a.action == "payment.refund"]
    [payment] = await shop.payments(alice.id)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.refunded is None
    assert sum("Payment received" in t for t in alice.texts()) == 1
    assert sum("returned to you" in t for t in alice.texts()) == 1
