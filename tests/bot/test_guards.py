"""The middlewares and the error handler, end to end: banned users, throttling, the
required channel, our own bugs, odd input, users who block the bot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from tests.bot.harness import BotShop, bot_shop
from vpnshop.testing.telegram import CallbackQuery
from vpnshop_bot.menu import MenuRegistry


async def test_banned_user_gets_one_message_and_nothing_happens(shop: BotShop) -> None:
    """A banned customer's updates reach no handler: one ban notice, then silence; a
    button press is still answered."""
    alice = shop.user(1001, "Alice")
    await alice.start()
    menu = await alice.reply()
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(alice.id)
        assert customer is not None
        await uow.customers.update(customer.banned_as(True))
        await uow.commit()
    await alice.send("/start")
    notice = await alice.reply()
    assert "access to this shop has been blocked" in notice.text
    await alice.send("/start")
    query = await alice.press("🎁 Free trial", menu)
    await answered(query)
    assert sum("blocked" in t for t in alice.texts()) == 1
    cid = await shop.customer_id(alice.id)
    async with shop.app.deps.uow() as uow:
        assert not await uow.trials.used(cid)


async def test_a_ban_made_elsewhere_applies_within_the_cache_ttl(shop: BotShop) -> None:
    """A ban written by another process stops a customer's button presses once their
    cached entry is older than the cache's TTL, without a /start."""
    alice = shop.user(1001, "Alice")
    cache = shop.dp["ctx"].customers
    clock = [0.0]
    cache.now = lambda: clock[0]
    await alice.start()
    await alice.reply()  # the customer is cached now, at time 0
    await alice.send("/menu")
    menu = await alice.reply()
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(alice.id)
        assert customer is not None
        await uow.customers.update(customer.banned_as(True))
        await uow.commit()
    clock[0] = cache.ttl + 0.001
    query = await alice.press("🎁 Free trial", menu)
    await answered(query)
    assert "blocked" in (query.text or "")
    cid = await shop.customer_id(alice.id)
    async with shop.app.deps.uow() as uow:
        assert not await uow.trials.used(cid)


@pytest.mark.parametrize("shared", ["memory", "redis"])
async def test_throttling_drops_updates_with_one_polite_message(
    database_url: str, shared: str, request: pytest.FixtureRequest
) -> None:
    """Over the per-minute limit the updates are dropped, the user hears it once, and a
    button press is still answered; the same with the window kept in a real Redis."""
    env = {"VPNSHOP_BOT_THROTTLE_CUSTOMER": "3"}
    if shared == "redis":
        env["VPNSHOP_REDIS_URL"] = request.getfixturevalue("redis_url")
    async with bot_shop(database_url, env) as shop:
        alice = shop.user(1001, "Alice")
        for _ in range(3):
            await alice.send("/start")
            await alice.reply()
        menu = alice.last
        for _ in range(4):
            await alice.send("/start")
        await alice.wait_until(lambda: "Too many requests" in alice.last.text, within=5)
        query = await alice.press("🌐 Language", menu)
        await answered(query)
        assert sum("Too many requests" in t for t in alice.texts()) == 1
        assert sum("Welcome" in t for t in alice.texts()) == 3
        # The four dropped /start are handled concurrently with the press: wait for all.
        dropped = shop.metrics.dropped.labels("throttled")
        for _ in range(100):
            if dropped._value.get() >= 5:
                break
            await asyncio.sleep(0.05)
        assert dropped._value.get() == 5


async def test_required_channel_gate(database_url: str) -> None:
    """A non-member is asked to join and press Check; Check lets a member in."""
    async with bot_shop(database_url, {"VPNSHOP_REQUIRED_CHANNEL": "@vpnnews"}) as shop:
        channel = shop.tg.add_chat(-1001234567, "channel", title="News", username="vpnnews")
        alice = shop.user(1001, "Alice")
        await alice.start()
        gate = await alice.reply()
        assert "join our channel @vpnnews" in gate.text
        assert alice.button("Join the channel", gate).url == "https://t.me/vpnnews"
        query = await alice.press("Check", gate)
        await answered(query)
        assert "not joined" in (query.text or "")
        channel.members[alice.id] = "member"
        await alice.press("Check", gate)
        await alice.wait_until(lambda: "Main menu" in alice.last.text, within=5)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> bool:
    """Whether *check* comes true within *within* seconds (the bot polls updates)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def answered(query: CallbackQuery) -> None:
    """Wait until the bot has answered *query*."""
    await asyncio.wait_for(query.done.wait(), 5)


async def _not(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


def failing(menu: MenuRegistry) -> Router:
    router = Router(name="failing")

    @router.message(Command("boom"))
    async def boom(message: Message) -> None:
        raise RuntimeError("a bug in a handler")

    return router


async def test_error_handler_gives_a_reference_id(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler's bug tells the user a short reference, and the log line with the
    traceback carries the same reference."""
    async with bot_shop(database_url, extra=(failing,)) as shop:
        alice = shop.user(1001, "Alice", language_code="ru")
        with caplog.at_level(logging.ERROR, logger="vpnshop_bot.errors"):
            await alice.send("/boom")
            answer = await alice.reply()
        assert "Номер обращения" in answer.text
        ref = answer.text.rsplit(" ", 1)[-1]
        records = [r for r in caplog.records if f"[ref {ref}]" in r.getMessage()]
        assert records
        assert records[0].exc_info is not None
        assert shop.metrics.errors.labels("Message")._value.get() == 1


async def test_unknown_command_and_text(shop: BotShop) -> None:
    """An unknown command and stray text each get a hint with a way back to the menu."""
    alice = shop.user(1001, "Alice")
    await alice.send("/nosuchcommand")
    answer = await alice.reply()
    assert "Unknown command" in answer.text
    assert answer.button_labels == ["« Back"]
    await alice.send("hello?")
    assert "did not understand" in (await alice.reply()).text


async def test_html_in_names_is_escaped(shop: BotShop) -> None:
    """A first name full of HTML is shown as text (Telegram would refuse broken HTML)."""
    eve = shop.user(1001, "<b>Eve</b> & <script>")
    await eve.start()
    answer = await eve.reply()
    assert "Welcome, <b>Eve</b> & <script>!" in answer.text


async def test_forged_and_foreign_callback_data_changes_nothing(shop: BotShop) -> None:
    """Callback data the bot never sent gets the menu back, and nothing is stored."""
    alice = shop.user(1001, "Alice")
    await alice.start()
    menu = await alice.reply()
    for data in ("lg:de", "cn:plan9", "n:" + "x" * 40):
        query = await alice.press_data(data, menu)
        await answered(query)
        assert query.text == "This button is out of date."
    async with shop.app.deps.uow() as uow:
        customer = await uow.customers.by_telegram_id(alice.id)
    assert customer is not None
    assert customer.language == "en"


async def test_blocking_the_bot_marks_the_customer_unreachable(shop: BotShop) -> None:
    """Blocking the bot marks the customer unreachable; unblocking marks them reachable."""
    alice = shop.user(1001, "Alice")
    await alice.start()
    await alice.reply()

    async def unreachable() -> bool:
        async with shop.app.deps.uow() as uow:
            customer = await uow.customers.by_telegram_id(alice.id)
        assert customer is not None
        return customer.unreachable

    await alice.block()
    assert await eventually(unreachable)
    await alice.unblock()
    assert await eventually(lambda: _not(unreachable))
