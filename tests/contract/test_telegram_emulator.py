"""The Telegram Bot API emulator, driven by aiogram 3's own client: proves the wire format.

aiogram sends urlencoded forms (multipart when a file is attached) and parses every
answer into its models, so a field the emulator got wrong fails here.
"""

from __future__ import annotations

import asyncio
import html
import json
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
)
from aiohttp import web

from vpnshop.testing.telegram import RateLimits, TelegramEmulator, TgUser


def png(width: int = 3, height: int = 2) -> bytes:
    """A valid PNG of *width* x *height* black pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=lb, callback_data=f"cb:{lb}")] for lb in labels]
    )


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emu:
        yield emu


@pytest.fixture
async def bot(tg: TelegramEmulator) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.api_url))
    b = Bot(tg.token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    yield b
    await b.session.close()


@pytest.fixture
async def alice(tg: TelegramEmulator) -> TgUser:
    user = tg.user(1001, "Alice", language_code="ru", username="alice")
    await user.start()
    tg.feed.pending.clear()  # each test starts from an empty queue
    return user


async def test_get_me_is_the_bot(bot: Bot, tg: TelegramEmulator) -> None:
    """getMe answers the bot's identity, which aiogram parses into its User model."""
    me = await bot.get_me()
    assert me.is_bot and me.id == tg.bot_id and me.username == "vpnshop_test_bot"


async def test_send_message_with_keyboard_reaches_the_chat(bot: Bot, alice: TgUser) -> None:
    """sendMessage with HTML and an inline keyboard lands in the chat as the user reads it."""
    sent = await bot.send_message(alice.id, "<b>Menu</b> &amp; more", reply_markup=keyboard("Buy"))
    assert isinstance(sent, Message)
    assert sent.text == "Menu & more"
    assert sent.entities is not None and sent.entities[0].type == "bold"
    assert sent.reply_markup is not None
    assert alice.last.text == "Menu & more"
    assert alice.last.source == "<b>Menu</b> &amp; more"
    assert alice.last.button_labels == ["Buy"]


async def test_unknown_blocked_and_unstarted_chats_are_refused(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """An unknown chat answers 400, a user who blocked the bot or never started it 403."""
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(424242, "hi")
    stranger = tg.user(2002, "Bob")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(stranger.id, "hi")
    await alice.block()
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(alice.id, "hi")
    await alice.unblock()
    await bot.send_message(alice.id, "welcome back")
    await alice.deactivate()
    with pytest.raises(TelegramForbiddenError, match="Forbidden: user is deactivated"):
        await bot.send_message(alice.id, "hi")


async def test_invalid_messages_get_telegrams_own_errors(bot: Bot, alice: TgUser) -> None:
    """Over-long callback data, over-long text and broken HTML each answer their 400."""
    too_long = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="d" * 65)]]
    )
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(alice.id, "hi", reply_markup=too_long)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(alice.id, "x" * 4097)
    await bot.send_message(alice.id, "<b>ok</b>" + "x" * 4094)  # tags do not count
    with pytest.raises(
        TelegramBadRequest,
        match="can't parse entities: Can't find end tag corresponding to start tag \"b\"",
    ):
        await bot.send_message(alice.id, "<b>unclosed")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "script" at byte offset 3'):
        await bot.send_message(alice.id, "hi <script>")
    with pytest.raises(TelegramBadRequest, match="Unexpected end tag"):
        await bot.send_message(alice.id, "x</i>")
    await bot.send_message(alice.id, "1 &lt; 2 &amp; R&D", parse_mode="HTML")
    assert alice.last.text == "1 < 2 & R&D"
    assert len(alice.bot_messages()) == 2  # nothing refused was stored


async def test_edits_and_deletions_follow_telegram(bot: Bot, alice: TgUser) -> None:
    """Edits replace text and markup, an identical edit is "not modified", a deleted
    message cannot be edited."""
    sent = await bot.send_message(alice.id, "Plans", reply_markup=keyboard("Month"))
    edited = await bot.edit_message_text(
        "Plans (updated)",
        chat_id=alice.id,
        message_id=sent.message_id,
        reply_markup=keyboard("Year"),
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    assert alice.last.text == "Plans (updated)" and alice.last.button_labels == ["Year"]
    assert alice.last.previous_texts == ["Plans"]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "Plans (updated)",
            chat_id=alice.id,
            message_id=sent.message_id,
            reply_markup=keyboard("Year"),
        )
    await bot.edit_message_reply_markup(
        chat_id=alice.id, message_id=sent.message_id, reply_markup=keyboard("Week")
    )
    assert alice.last.button_labels == ["Week"]
    await bot.edit_message_text("No keyboard", chat_id=alice.id, message_id=sent.message_id)
    assert alice.last.buttons == []  # an edit without reply_markup drops the keyboard
    assert await bot.delete_message(alice.id, sent.message_id) is True
    assert alice.bot_messages() == []
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("again", chat_id=alice.id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(alice.id, sent.message_id)


async def test_callback_query_round_trip(bot: Bot, alice: TgUser) -> None:
    """Pressing a button delivers a callback_query that aiogram parses; it can be answered
    once, and a second answer is "query is too old"."""
    await bot.send_message(alice.id, "Menu", reply_markup=keyboard("Buy", "Help"))
    query = await alice.press("Help")
    updates = await bot.get_updates(timeout=1)
    callback = updates[-1].callback_query
    assert isinstance(callback, CallbackQuery)
    assert callback.data == "cb:Help" and callback.from_user.id == alice.id
    assert callback.message is not None and callback.message.message_id == alice.last.message_id
    assert await bot.answer_callback_query(callback.id, text="Opening help") is True
    assert query.done.is_set() and query.text == "Opening help"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(callback.id)


async def test_pressing_a_missing_button_fails_clearly(bot: Bot, alice: TgUser) -> None:
    """Pressing a button the newest message lacks fails with an AssertionError naming the
    buttons it has; an older message's button is pressed by naming that message."""
    menu = await bot.send_message(alice.id, "Menu", reply_markup=keyboard("Buy"))
    with pytest.raises(AssertionError, match=r"no button 'Sell'.*\['Buy'\]"):
        await alice.press("Sell")
    await bot.send_message(alice.id, "Some news")
    with pytest.raises(AssertionError, match=r"no button 'Buy'.*'Some news'.*\[\]"):
        await alice.press("Buy")
    [older] = [m for m in alice.bot_messages() if m.message_id == menu.message_id]
    query = await alice.press("Buy", older)
    assert query.data == "cb:Buy" and query.message_id == menu.message_id


async def test_send_photo_multipart_stores_the_bytes(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """sendPhoto with a BufferedInputFile (multipart) stores the exact bytes, which the
    test reads back and aiogram downloads from the file endpoint."""
    image = png(5, 4)
    sent = await bot.send_photo(
        alice.id, BufferedInputFile(image, "qr.png"), caption="<i>Your link</i>"
    )
    assert sent.photo is not None and (sent.photo[-1].width, sent.photo[-1].height) == (5, 4)
    assert sent.caption == "Your link"
    assert alice.photo_bytes() == image
    downloaded = await bot.download(sent.photo[-1].file_id)
    assert downloaded is not None and downloaded.read() == image
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(alice.id, BufferedInputFile(b"not an image", "x.png"))
    again = await bot.send_photo(alice.id, sent.photo[-1].file_id)  # resend by file_id
    assert alice.photo_bytes(alice.last) == image and again.photo is not None


async def test_stars_invoice_payment_and_refund(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """sendInvoice in XTR, pay (pre-checkout answered through aiogram, then
    successful_payment with a charge id), refundStarPayment once."""
    await bot.send_invoice(
        alice.id,
        title="VPN 1 month",
        description="30 days",
        payload="pay-42",
        currency="XTR",
        prices=[LabeledPrice(label="1 month", amount=150)],
        provider_token="",
    )
    assert alice.last.invoice == {
        "title": "VPN 1 month",
        "description": "30 days",
        "start_parameter": "",
        "currency": "XTR",
        "total_amount": 150,
    }
    paying = asyncio.create_task(alice.pay())
    [update] = await bot.get_updates(timeout=2)
    query = update.pre_checkout_query
    assert query is not None and (query.currency, query.total_amount) == ("XTR", 150)
    assert query.invoice_payload == "pay-42"
    assert await bot.answer_pre_checkout_query(query.id, ok=True) is True
    result = await paying
    assert result.ok and result.charge_id is not None
    [update] = await bot.get_updates(offset=update.update_id + 1, timeout=2)
    assert update.message is not None and update.message.successful_payment is not None
    paid = update.message.successful_payment
    assert paid.telegram_payment_charge_id == result.charge_id
    assert (paid.total_amount, paid.invoice_payload) == (150, "pay-42")

    assert await bot.refund_star_payment(alice.id, result.charge_id) is True
    [update] = await bot.get_updates(offset=update.update_id + 1, timeout=2)
    assert update.message is not None and update.message.refunded_payment is not None
    assert update.message.refunded_payment.telegram_payment_charge_id == result.charge_id
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(alice.id, result.charge_id)
    with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
        await bot.send_invoice(
            alice.id,
            title="t",
            description="d",
            payload="p",
            currency="XTR",
            prices=[LabeledPrice(label="a", amount=1), LabeledPrice(label="b", amount=2)],
        )


async def test_refused_pre_checkout_sends_no_payment(bot: Bot, alice: TgUser) -> None:
    """A pre-checkout answered ok=False ends the payment with the bot's reason and no
    successful_payment."""
    await bot.send_invoice(
        alice.id,
        "VPN",
        "30 days",
        "pay-1",
        currency="XTR",
        prices=[LabeledPrice(label="m", amount=5)],
    )
    paying = asyncio.create_task(alice.pay(total_amount=1))  # a tampered client
    [update] = await bot.get_updates(timeout=2)
    assert update.pre_checkout_query is not None
    await bot.answer_pre_checkout_query(
        update.pre_checkout_query.id, ok=False, error_message="Price changed"
    )
    result = await paying
    assert not result.ok and result.error_message == "Price changed"
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []


async def test_invoice_link_for_a_stars_subscription(bot: Bot, alice: TgUser) -> None:
    """createInvoiceLink accepts a 30-day subscription period in XTR and can be paid."""
    link = await bot.create_invoice_link(
        "VPN",
        "monthly",
        "sub-1",
        currency="XTR",
        prices=[LabeledPrice(label="m", amount=100)],
        subscription_period=2592000,
    )
    assert link.startswith("https://t.me/$")
    paying = asyncio.create_task(alice.pay_link(link))
    [update] = await bot.get_updates(timeout=2)
    assert update.pre_checkout_query is not None
    await bot.answer_pre_checkout_query(update.pre_checkout_query.id, ok=True)
    assert (await paying).ok


async def test_long_polling_waits_then_returns_and_offsets_confirm(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """getUpdates with a timeout returns as soon as an update arrives; an offset confirms
    what came before it."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await alice.send("/help please")
    [update] = await poll
    assert loop.time() - started < 5
    assert update.message is not None and update.message.text == "/help please"
    assert update.message.entities is not None
    assert update.message.entities[0].type == "bot_command"
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []


async def test_second_poller_terminates_the_first(bot: Bot, tg: TelegramEmulator) -> None:
    """A second concurrent getUpdates makes the pending one answer 409 Conflict."""
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    assert await bot.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first


async def test_webhook_delivery_with_secret_and_retries(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """setWebhook delivers updates with the secret header, retries a failed delivery, and
    getUpdates answers 409 while the webhook is set."""
    received: list[tuple[str | None, dict[str, object]]] = []
    answers = [500, 200, 200]

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
    try:
        await bot.set_webhook(
            url,
            secret_token="s3cr3t_TOKEN",
            allowed_updates=["message"],
            drop_pending_updates=True,
        )
        info = await bot.get_webhook_info()
        assert info.url == url and info.allowed_updates == ["message"]
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        await alice.send("hello")
        await alice.press_data("ignored", alice.messages()[-1])  # not an allowed kind
        await alice.send("again")
        for _ in range(100):
            if len(received) >= 3 and all(d.status for d in tg.feed.deliveries):
                break
            await asyncio.sleep(0.05)
        assert [secret for secret, _ in received] == ["s3cr3t_TOKEN"] * 3
        texts = [body["message"]["text"] for _, body in received]  # type: ignore[index]
        assert texts == ["hello", "hello", "again"]  # the 500 was retried
        assert [d.status for d in tg.feed.deliveries] == [500, 200, 200]
        assert (await bot.get_webhook_info()).last_error_message is not None
        await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
    finally:
        await runner.cleanup()


async def test_rate_limits_answer_429_with_retry_after(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """An injected flood wait and the per-chat limit both raise aiogram's
    TelegramRetryAfter with the seconds to wait."""
    tg.throttle_next(retry_after=7, method="sendMessage")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(alice.id, "hi")
    assert caught.value.retry_after == 7
    tg.rate_limits = RateLimits(per_chat=1, per_bot=None, window=1.0)
    await bot.send_message(alice.id, "one")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(alice.id, "two")
    assert caught.value.retry_after == 1
    assert alice.texts() == ["one"]


async def test_bad_token_unknown_method_and_commands(tg: TelegramEmulator, bot: Bot) -> None:
    """A wrong token answers 401, an unknown method 404; setMyCommands is kept."""
    wrong = Bot("999:wrong", session=AiohttpSession(api=TelegramAPIServer.from_base(tg.api_url)))
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await wrong.get_me()
    finally:
        await wrong.session.close()
    url = f"{tg.api_url}/bot{tg.token}/noSuchMethod"
    async with aiohttp.ClientSession() as http, http.post(url) as resp:
        assert resp.status == 404
        assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert await bot.set_my_commands([BotCommand(command="start", description="Menu")])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]


async def test_json_and_urlencoded_bodies_are_equivalent(
    tg: TelegramEmulator, alice: TgUser
) -> None:
    """A JSON body and an urlencoded form with JSON-text markup are read alike."""
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    url = f"{tg.api_url}/bot{tg.token}/sendMessage"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url, json={"chat_id": alice.id, "text": "j", "reply_markup": markup}
        ) as r:
            assert (await r.json())["ok"] is True
        form = {"chat_id": str(alice.id), "text": "f", "reply_markup": json.dumps(markup)}
        async with http.post(url, data=form) as r:
            assert (await r.json())["result"]["reply_markup"] == markup
    assert [m.button_labels for m in alice.bot_messages()] == [["Go"], ["Go"]]


async def test_my_chat_member_and_channel_membership(
    bot: Bot, tg: TelegramEmulator, alice: TgUser
) -> None:
    """Blocking the bot delivers my_chat_member (kicked) that aiogram parses; getChatMember
    reports a channel member's status."""
    await alice.block()
    updates = await bot.get_updates(timeout=1)
    member = updates[-1].my_chat_member
    assert member is not None and member.new_chat_member.status == "kicked"
    assert member.chat.id == alice.id
    tg.add_chat(-100500, "channel", title="News", username="vpnshop_news")
    assert (await bot.get_chat_member("@vpnshop_news", alice.id)).status == "left"
    tg.chats[-100500].members[alice.id] = "member"
    assert (await bot.get_chat_member(-100500, alice.id)).status == "member"


async def test_an_aiogram_dispatcher_answers_through_the_emulator(
    bot: Bot, tg: TelegramEmulator
) -> None:
    """A real Dispatcher polling the emulator answers /start; the user reads the reply."""
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        name = message.from_user.first_name if message.from_user else ""
        await message.answer(f"Hello, {html.escape(name)}")

    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        carol = tg.user(3003, "Carol <b>")
        await carol.start("ref_abc")
        reply = await carol.reply(within=10)
        assert reply.text == "Hello, Carol <b>" and reply.source == "Hello, Carol &lt;b&gt;"
    finally:
        await dp.stop_polling()
        await polling


async def test_aiogram_webhook_handler_checks_the_secret(bot: Bot, tg: TelegramEmulator) -> None:
    """aiogram's own webhook handler accepts the emulator's deliveries with the right
    secret (the bot answers) and refuses them with a wrong one (the emulator retries)."""
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler

    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {html.escape(message.text or '')}")

    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token="right_secret").register(
        app, path="/tg"
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
    try:
        dave = tg.user(4004, "Dave")
        await bot.set_webhook(url, secret_token="right_secret")
        await dave.send("one")
        assert (await dave.reply(within=10)).text == "echo: one"
        tg.feed.retry_delays = (0.01, 0.01)
        await bot.set_webhook(url, secret_token="wrong_secret")
        await dave.send("two")
        for _ in range(200):
            if len(tg.feed.deliveries) >= 4 and not tg.feed.pending:  # given up
                break
            await asyncio.sleep(0.025)
        assert [d.status for d in tg.feed.deliveries[1:]] == [401, 401, 401]
        assert dave.texts() == ["echo: one"]
    finally:
        await bot.delete_webhook()
        await runner.cleanup()
