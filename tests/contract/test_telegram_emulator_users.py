"""The emulator's user side and update queue, with the plain Bot API client as the bot
(no aiogram here, so these run fast)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from vpnshop.adapters.telegram import BotApiClient, BotApiError, BotApiSettings
from vpnshop.testing.telegram import TelegramEmulator, TgUser


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emu:
        yield emu


@pytest.fixture
async def api(tg: TelegramEmulator) -> AsyncIterator[BotApiClient]:
    async with BotApiClient(BotApiSettings(tg.token, tg.api_url, timeout=10)) as client:
        yield client


@pytest.fixture
async def alice(tg: TelegramEmulator) -> TgUser:
    user = tg.user(1001, "Alice")
    await user.start("promo_SPRING")
    return user


async def test_start_with_payload_is_a_command_update(api: BotApiClient, alice: TgUser) -> None:
    """start(payload) sends "/start <payload>" with a bot_command entity over /start."""
    [update] = await api.call("getUpdates")
    message = update["message"]
    assert message["text"] == "/start promo_SPRING"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["from"]["id"] == alice.id and message["chat"]["type"] == "private"
    with pytest.raises(AssertionError, match="no deep link"):
        await alice.start("ref code")


async def test_reply_waits_for_the_bots_next_message(api: BotApiClient, alice: TgUser) -> None:
    """reply() returns the first bot message sent after the user's last action, and fails
    naming the chat when none comes."""

    async def answer_later() -> None:
        await asyncio.sleep(0.1)
        await api.call("sendMessage", {"chat_id": alice.id, "text": "Welcome"})

    task = asyncio.create_task(answer_later())
    assert (await alice.reply(within=5)).text == "Welcome"
    await task
    await alice.send("anything?")
    with pytest.raises(AssertionError, match=r"waited 0.2 s for a reply.*'Welcome'"):
        await alice.reply(within=0.2)


async def test_edits_count_as_replies(api: BotApiClient, alice: TgUser) -> None:
    """An edit of an earlier message after the user's action is a reply too."""
    sent = await api.call("sendMessage", {"chat_id": alice.id, "text": "Menu"})
    await alice.send("tap")
    await api.call(
        "editMessageText",
        {"chat_id": alice.id, "message_id": sent["message_id"], "text": "Menu 2"},
    )
    reply = await alice.reply(within=1)
    assert reply.message_id == sent["message_id"] and reply.text == "Menu 2"


async def test_block_then_writing_unblocks(api: BotApiClient, alice: TgUser) -> None:
    """A blocked user who writes to the bot unblocks it, with my_chat_member updates both
    ways, and can be written to again."""
    await alice.block()
    await alice.send("/start")
    updates = await api.call("getUpdates")
    kinds = [
        u["my_chat_member"]["new_chat_member"]["status"] if "my_chat_member" in u else "message"
        for u in updates
    ]
    assert kinds == ["message", "kicked", "member", "message"]
    await api.call("sendMessage", {"chat_id": alice.id, "text": "hi again"})
    assert alice.texts() == ["hi again"]


async def test_redelivery_repeats_a_message_under_a_new_update_id(
    api: BotApiClient, alice: TgUser
) -> None:
    """redeliver() queues the same message again, as Telegram does after a lost answer."""
    first = alice.messages()[-1]
    await alice.redeliver(first)
    one, two = await api.call("getUpdates")
    assert one["message"] == two["message"] and one["update_id"] != two["update_id"]


async def test_allowed_updates_persist_and_filter(
    api: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """allowed_updates set by one getUpdates call holds for the next ones and drops the
    other kinds; a negative offset keeps only the newest updates."""
    sent = await api.call(
        "sendMessage",
        {
            "chat_id": alice.id,
            "text": "Menu",
            "reply_markup": {"inline_keyboard": [[{"text": "Buy", "callback_data": "b"}]]},
        },
    )
    assert sent["reply_markup"]["inline_keyboard"][0][0]["text"] == "Buy"
    await alice.press("Buy")
    updates = await api.call("getUpdates", {"allowed_updates": ["callback_query"]})
    assert [next(k for k in u if k != "update_id") for u in updates] == ["callback_query"]
    await alice.send("one")
    await alice.press("Buy")
    await alice.press("Buy")
    assert len(await api.call("getUpdates", {"offset": -1})) == 1
    assert tg.feed.info()["allowed_updates"] == ["callback_query"]


async def test_unanswered_pre_checkout_fails_the_payment(
    api: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """A pre_checkout_query nobody answers fails pay() clearly; a late answer is refused."""
    await api.call(
        "sendInvoice",
        {
            "chat_id": alice.id,
            "title": "VPN",
            "description": "30 days",
            "payload": "pay-1",
            "currency": "XTR",
            "prices": [{"label": "month", "amount": 100}],
        },
    )
    tg.pre_checkout_timeout = 0.2
    with pytest.raises(AssertionError, match="did not answer pre_checkout_query"):
        await alice.pay()
    [query] = tg.pre_checkouts.values()
    with pytest.raises(BotApiError, match="query is too old"):
        await api.call("answerPreCheckoutQuery", {"pre_checkout_query_id": query.id, "ok": True})
    assert not [m for m in alice.messages() if m.successful_payment]


async def test_refund_by_support_is_a_refunded_payment_message(
    api: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """refunded() sends the refunded_payment service message for a paid charge, and the
    bot can no longer refund it."""
    await api.call(
        "sendInvoice",
        {
            "chat_id": alice.id,
            "title": "VPN",
            "description": "30 days",
            "payload": "pay-2",
            "currency": "XTR",
            "prices": [{"label": "month", "amount": 100}],
        },
    )

    async def approve() -> None:
        while not tg.pre_checkouts:
            await asyncio.sleep(0.01)
        [query] = tg.pre_checkouts.values()
        await api.call("answerPreCheckoutQuery", {"pre_checkout_query_id": query.id, "ok": True})

    approving = asyncio.create_task(approve())
    paid = await alice.pay()
    await approving
    assert paid.ok and paid.charge_id is not None
    refund = await alice.refunded(paid.charge_id)
    assert refund.extra["refunded_payment"]["invoice_payload"] == "pay-2"
    with pytest.raises(BotApiError, match="CHARGE_ALREADY_REFUNDED"):
        await api.call(
            "refundStarPayment",
            {"user_id": alice.id, "telegram_payment_charge_id": paid.charge_id},
        )


async def test_a_webhook_answer_may_carry_a_method(
    api: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """A webhook that answers with {"method": ...} has that method run, as Telegram does."""

    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        chat_id = update["message"]["chat"]["id"]
        return web.json_response({"method": "sendMessage", "chat_id": chat_id, "text": "pong"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        await api.call("setWebhook", {"url": url, "drop_pending_updates": True})
        await alice.send("ping")
        assert (await alice.reply(within=5)).text == "pong"
        assert [d.secret_header for d in tg.feed.deliveries] == [None]
    finally:
        await runner.cleanup()


async def test_reply_keyboard_taps_send_the_label(api: BotApiClient, alice: TgUser) -> None:
    """A custom keyboard stays until removed; tapping a key sends its label as text."""
    keyboard = {"keyboard": [[{"text": "My subscription"}, {"text": "Buy"}]], "is_persistent": True}
    await api.call("sendMessage", {"chat_id": alice.id, "text": "Menu", "reply_markup": keyboard})
    await api.call("sendMessage", {"chat_id": alice.id, "text": "Anything else"})
    sent = await alice.tap("Buy")
    assert sent.text == "Buy" and not sent.entities
    await api.call(
        "sendMessage",
        {"chat_id": alice.id, "text": "Bye", "reply_markup": {"remove_keyboard": True}},
    )
    with pytest.raises(AssertionError, match=r"no key 'Buy'.*\[\]"):
        await alice.tap("Buy")
