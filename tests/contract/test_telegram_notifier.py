"""TelegramNotifier and its Bot API client against the Telegram emulator, over real HTTP:
each answer Telegram can give and what it becomes for the outbox."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from vpnshop.adapters.telegram import (
    BotApiClient,
    BotApiError,
    BotApiSettings,
    BotApiUnavailableError,
    TelegramNotifier,
)
from vpnshop.domain.outbox import JobStatus, OutboxJob
from vpnshop.ports.notifier import (
    Button,
    Message,
    MessageRejectedError,
    Notifier,
    NotifierUnavailableError,
    RecipientUnreachableError,
    RetryLaterError,
)
from vpnshop.services.deps import Deps
from vpnshop.services.outbox import OutboxWorker
from vpnshop.testing.fakes import FakeClock, FakeNotifier, SequentialIds
from vpnshop.testing.memory import MemoryStore, memory_uow_factory
from vpnshop.testing.telegram import TelegramEmulator, TgUser

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def png(width: int = 4, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = b"".join(b"\x00" * (width + 1) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class RecordingSleep:
    """Records each wait the notifier asks for and waits not at all."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emu:
        yield emu


@pytest.fixture
async def client(tg: TelegramEmulator) -> AsyncIterator[BotApiClient]:
    async with BotApiClient(BotApiSettings(tg.token, tg.api_url, timeout=5)) as c:
        yield c


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def notifier(client: BotApiClient, sleep: RecordingSleep) -> TelegramNotifier:
    return TelegramNotifier(client, max_wait=30, sleep=sleep)


@pytest.fixture
async def alice(tg: TelegramEmulator) -> TgUser:
    user = tg.user(1001, "Alice")
    await user.start()
    return user


_: Notifier = TelegramNotifier(BotApiClient(BotApiSettings("1:x")))


async def test_text_with_buttons_arrives_as_html(notifier: TelegramNotifier, alice: TgUser) -> None:
    """A message is sent in HTML parse mode with its URL and callback buttons."""
    await notifier.send(
        alice.id,
        Message(
            "<b>Paid</b>, active until 1 Jan",
            buttons=(
                (Button("Open", url="https://example.com/sub/x"),),
                (Button("Menu", callback="m"),),
            ),
        ),
    )
    assert alice.last.text == "Paid, active until 1 Jan"
    assert alice.last.entities[0]["type"] == "bold"
    assert [[b.url or b.callback_data for b in row] for row in alice.last.buttons] == [
        ["https://example.com/sub/x"],
        ["m"],
    ]


async def test_image_goes_as_a_photo_with_caption(
    notifier: TelegramNotifier, alice: TgUser
) -> None:
    """A message with a PNG is one photo whose caption is the text; the bytes arrive intact."""
    image = png()
    await notifier.send(
        alice.id, Message("Your <i>QR</i>", ((Button("Menu", callback="m"),),), image)
    )
    [sent] = alice.bot_messages()
    assert sent.caption == "Your QR" and sent.button_labels == ["Menu"]
    assert alice.photo_bytes(sent) == image


async def test_long_text_with_image_goes_as_photo_then_text(
    notifier: TelegramNotifier, alice: TgUser
) -> None:
    """Text too long for a caption follows the photo as its own message, with the buttons."""
    text = "x" * 1500
    await notifier.send(alice.id, Message(text, ((Button("Menu", callback="m"),),), png()))
    photo, body = alice.bot_messages()
    assert photo.photo_file_id is not None and photo.caption is None
    assert body.text == text and body.button_labels == ["Menu"]


async def test_flood_limit_waits_exactly_retry_after_then_sends(
    notifier: TelegramNotifier, sleep: RecordingSleep, tg: TelegramEmulator, alice: TgUser
) -> None:
    """A 429 makes the notifier wait exactly retry_after and send again, once."""
    tg.throttle_next(retry_after=3, count=2)
    await notifier.send(alice.id, Message("hello"))
    assert sleep.waits == [3.0, 3.0]
    assert alice.texts() == ["hello"]
    assert [c.error is None for c in tg.calls_of("sendMessage")] == [False, False, True]


async def test_flood_limit_really_waits(
    client: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """With the real sleep, the second attempt comes no sooner than retry_after."""
    tg.rate_limits = None
    tg.throttle_next(retry_after=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await TelegramNotifier(client).send(alice.id, Message("hi"))
    assert loop.time() - started >= 1.0
    assert alice.texts() == ["hi"]


async def test_long_flood_wait_is_left_to_the_outbox(
    notifier: TelegramNotifier, sleep: RecordingSleep, tg: TelegramEmulator, alice: TgUser
) -> None:
    """A retry_after above max_wait raises RetryLaterError with it, without waiting."""
    tg.throttle_next(retry_after=120)
    with pytest.raises(RetryLaterError) as caught:
        await notifier.send(alice.id, Message("hi"))
    assert caught.value.retry_after == 120
    assert sleep.waits == [] and alice.texts() == []


async def test_repeated_flood_limits_give_up_after_max_flood_waits(
    notifier: TelegramNotifier, sleep: RecordingSleep, tg: TelegramEmulator, alice: TgUser
) -> None:
    """After max_flood_waits waits the next 429 becomes RetryLaterError."""
    tg.throttle_next(retry_after=2, count=10)
    with pytest.raises(RetryLaterError):
        await notifier.send(alice.id, Message("hi"))
    assert sleep.waits == [2.0, 2.0, 2.0]


async def test_blocked_or_deactivated_user_is_unreachable(
    notifier: TelegramNotifier, tg: TelegramEmulator, alice: TgUser
) -> None:
    """403 (blocked, deactivated) raises RecipientUnreachableError after one call."""
    await alice.block()
    with pytest.raises(RecipientUnreachableError, match="bot was blocked by the user"):
        await notifier.send(alice.id, Message("hi"))
    assert len(tg.calls_of("sendMessage")) == 1
    await alice.unblock()
    await alice.deactivate()
    with pytest.raises(RecipientUnreachableError, match="user is deactivated"):
        await notifier.send(alice.id, Message("hi"))


async def test_other_4xx_is_rejected_with_the_reason(
    notifier: TelegramNotifier, tg: TelegramEmulator, alice: TgUser
) -> None:
    """A 400 (chat not found, broken HTML, bad button) raises MessageRejectedError naming
    Telegram's reason, and is not retried."""
    with pytest.raises(MessageRejectedError, match="chat not found"):
        await notifier.send(999999, Message("hi"))
    with pytest.raises(MessageRejectedError, match="can't parse entities"):
        await notifier.send(alice.id, Message("<b>oops"))
    with pytest.raises(MessageRejectedError, match="BUTTON_DATA_INVALID"):
        await notifier.send(alice.id, Message("hi", ((Button("x", callback="y" * 65),),)))
    assert len(tg.calls_of("sendMessage")) == 3
    assert alice.texts() == []


async def test_server_errors_and_a_wrong_token_are_transient(
    notifier: TelegramNotifier, tg: TelegramEmulator, alice: TgUser
) -> None:
    """5xx and 401 raise NotifierUnavailableError; the token never shows in the reason."""
    tg.fail_next(error_code=502, description="Bad Gateway")
    with pytest.raises(NotifierUnavailableError, match="502"):
        await notifier.send(alice.id, Message("hi"))
    async with BotApiClient(BotApiSettings("42:wrong-secret", tg.api_url)) as wrong:
        with pytest.raises(NotifierUnavailableError, match="token") as caught:
            await TelegramNotifier(wrong).send(alice.id, Message("hi"))
    assert "wrong-secret" not in str(caught.value)


async def test_unreachable_api_is_transient() -> None:
    """No server at the base URL raises NotifierUnavailableError, token redacted."""
    async with TelegramEmulator() as emu:
        base = emu.api_url
    async with BotApiClient(BotApiSettings("7:very-secret", base, timeout=2)) as client:
        with pytest.raises(NotifierUnavailableError, match="unreachable") as caught:
            await TelegramNotifier(client).send(1, Message("hi"))
    assert "very-secret" not in str(caught.value)


async def test_group_upgraded_to_supergroup_is_followed(
    notifier: TelegramNotifier, tg: TelegramEmulator
) -> None:
    """A 400 with migrate_to_chat_id re-sends to the supergroup and remembers it."""
    tg.add_chat(-500, "group", title="Admins", migrated_to=-100500)
    tg.add_chat(-100500, "supergroup", title="Admins")
    await notifier.send(-500, Message("new order"))
    await notifier.send(-500, Message("another"))
    assert [m.text for m in tg.chats[-100500].visible()] == ["new order", "another"]
    assert len(tg.calls_of("sendMessage")) == 3  # one refused, then two to the new id


async def test_client_maps_answers(client: BotApiClient, tg: TelegramEmulator) -> None:
    """The client returns the result, raises BotApiError with the API's fields, and
    BotApiUnavailableError for a body that is not the Bot API's."""
    me = await client.call("getMe")
    assert me["id"] == tg.bot_id
    tg.throttle_next(retry_after=5)
    with pytest.raises(BotApiError) as caught:
        await client.call("getMe")
    assert (caught.value.error_code, caught.value.retry_after) == (429, 5)
    async with BotApiClient(BotApiSettings(tg.token, tg.api_url + "/nowhere")) as wrong:
        with pytest.raises(BotApiUnavailableError, match="HTTP 404"):
            await wrong.call("getMe")


async def test_outbox_parks_rejected_and_unreachable_and_reschedules_floods(
    client: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """Through the outbox worker: a rejected message and an unreachable user park their
    jobs with the reason; a long flood wait reschedules by exactly retry_after."""
    clock = FakeClock(NOW)
    store = MemoryStore()
    deps = Deps(uow=memory_uow_factory(store), clock=clock, ids=SequentialIds())
    notifier = TelegramNotifier(client, max_wait=10)

    async def notify(job: OutboxJob) -> None:
        await notifier.send(int(str(job.payload["chat"])), Message(str(job.payload["text"])))

    bob = tg.user(2002, "Bob")
    await bob.start()
    await bob.block()
    async with deps.uow() as uow:
        for key, chat, text in [
            ("ok", alice.id, "fine"),
            ("bad", alice.id, "<b>broken"),
            ("blocked", bob.id, "hi"),
        ]:
            await uow.outbox.add(
                OutboxJob("notify_customer", {"chat": chat, "text": text}, key, NOW)
            )
        await uow.commit()
    report = await OutboxWorker(deps, {"notify_customer": notify}).drain()
    assert (report.done, report.parked) == (1, 2)
    async with deps.uow() as uow:
        parked = {j.dedupe_key: j.last_error for j in await uow.outbox.parked()}
    assert "can't parse entities" in (parked["bad"] or "")
    assert "blocked" in (parked["blocked"] or "")

    tg.throttle_next(retry_after=60)
    async with deps.uow() as uow:
        await uow.outbox.add(
            OutboxJob("notify_customer", {"chat": alice.id, "text": "x"}, "flood", NOW)
        )
        await uow.commit()
    report = await OutboxWorker(deps, {"notify_customer": notify}).run_once()
    assert report.retried == 1
    async with deps.uow() as uow:
        assert await uow.outbox.claim(NOW + timedelta(seconds=59.9), NOW, 10) == []
        [job] = await uow.outbox.claim(NOW + timedelta(seconds=60), NOW, 10)
    assert job.dedupe_key == "flood" and job.status is JobStatus.PENDING


def test_telegram_adapters_do_not_import_aiogram() -> None:
    """The notifier, the Stars gateway and the emulator load without aiogram, so the
    processes that use them stay light."""
    code = (
        "import sys\n"
        "import vpnshop.adapters.telegram, vpnshop.adapters.payments.stars\n"
        "import vpnshop.testing.telegram\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiogram'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


@attrs.frozen
class Harness:
    """A notifier with the means to block a chat and read what a chat received."""

    notifier: Notifier
    block: Callable[[int], Awaitable[None]]
    texts: Callable[[int], list[str]]


@pytest.fixture(params=["fake", "telegram"])
async def harness(
    request: pytest.FixtureRequest, tg: TelegramEmulator, client: BotApiClient
) -> Harness:
    if request.param == "fake":
        fake = FakeNotifier()

        async def block_fake(chat_id: int) -> None:
            fake.block(chat_id)

        return Harness(fake, block_fake, fake.texts)
    users = {uid: tg.user(uid, f"U{uid}") for uid in (1, 2)}
    for user in users.values():
        await user.start()

    async def block_user(chat_id: int) -> None:
        await users[chat_id].block()

    return Harness(TelegramNotifier(client), block_user, lambda c: users[c].texts())


async def test_fake_and_real_notifier_agree(harness: Harness) -> None:
    """FakeNotifier and TelegramNotifier deliver alike and refuse a blocked chat alike."""
    await harness.notifier.send(1, Message("hello", ((Button("Menu", callback="m"),),)))
    await harness.block(2)
    with pytest.raises(RecipientUnreachableError):
        await harness.notifier.send(2, Message("hi"))
    assert harness.texts(1) == ["hello"]
    assert harness.texts(2) == []
