"""Notifications from the outbox, rendered in the customer's language and sent to the
Telegram emulator by the TelegramNotifier that bootstrap builds from the settings."""

from __future__ import annotations

from tests.bot.harness import BotShop, bot_shop
from vpnshop.domain.actor import Actor
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobKind
from vpnshop.services.deps import enqueue


async def buy_month_from_balance(shop: BotShop, telegram_id: int) -> None:
    cid = await shop.customer_id(telegram_id)
    await shop.app.credit_balance(
        cid, Money(50_000, RUB), kind=EntryKind.TOPUP, key=f"t:{cid}", actor=Actor.system("t")
    )
    await shop.app.pay_from_balance(cid, "month", RUB, actor=Actor.customer(telegram_id))


async def test_plan_purchase_notice_has_expiry_and_link(shop: BotShop) -> None:
    """A paid plan tells the customer, in their language, until when and with which link."""
    ivan = shop.user(1001, "Ivan", language_code="ru")
    await ivan.start()
    await ivan.reply()
    await buy_month_from_balance(shop, ivan.id)
    await shop.run_outbox()
    cid = await shop.customer_id(ivan.id)
    async with shop.app.deps.uow() as uow:
        sub = (await uow.subscriptions.for_customer(cid))[0]
    assert sub.subscription_url
    await ivan.wait_until(lambda: "Оплата 199.00 RUB получена" in ivan.last.text)
    assert sub.expires_at.strftime("%d.%m.%Y") in ivan.last.text
    assert sub.subscription_url in ivan.last.text
    assert sum("Оплата" in t for t in ivan.texts()) == 1


async def test_blocked_customer_is_marked_unreachable_and_skipped(shop: BotShop) -> None:
    """A 403 from Telegram marks the customer unreachable; the next notice is skipped."""
    alice = shop.user(1001, "Alice")
    await alice.start()
    await alice.reply()
    cid = await shop.customer_id(alice.id)
    alice.account.blocked = True  # blocked while the bot was down: only the 403 tells
    await buy_month_from_balance(shop, alice.id)
    await shop.run_outbox()
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.get(cid)
    assert customer is not None
    assert customer.unreachable
    sends = len(shop.tg.calls_of("sendMessage"))
    async with shop.app.deps.uow() as uow:
        await enqueue(
            uow,
            shop.clock.now(),
            JobKind.NOTIFY_CUSTOMER,
            "n:x",
            customer_id=cid,
            template="expired",
            hours_ago=1,
        )
        await uow.commit()
    await shop.run_outbox()
    assert len(shop.tg.calls_of("sendMessage")) == sends


async def test_admin_notice_goes_to_every_admin(database_url: str) -> None:
    """NOTIFY_ADMINS reaches each admin id that has opened the bot, each in the language
    the bot knows them by."""
    async with bot_shop(database_url, {"VPNSHOP_ADMIN_IDS": "9001,9002"}) as shop:
        admins = [shop.user(9001, "Root"), shop.user(9002, "Ops", language_code="ru")]
        for admin in admins:
            await admin.start()
            await admin.reply()
        async with shop.app.deps.uow() as uow:
            await enqueue(
                uow,
                shop.clock.now(),
                JobKind.NOTIFY_ADMINS,
                "mismatch:x",
                template="amount_mismatch",
                payment_id="pay_1",
                expected="199.00 RUB",
                got="1.00 RUB",
            )
            await uow.commit()
        await shop.run_outbox()
        for admin in admins:
            await admin.wait_until(lambda a=admin: "pay_1" in a.last.text)  # type: ignore[misc]
        root, ops = admins
        assert "expected 199.00 RUB" in root.last.text
        assert "ожидалось 199.00 RUB" in ops.last.text
