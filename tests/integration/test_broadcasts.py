"""Broadcasts on every backend through the Telegram emulator over real HTTP: segments,
the rate, 429 and 403, cancelling, and resuming after a sender died mid-way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from tests.integration.shop import ADMIN, Shop, make_shop
from vpnshop.adapters.telegram import BotApiClient, BotApiSettings, TelegramNotifier
from vpnshop.domain.broadcast import BroadcastStatus, Segment
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.ports.notifier import Message
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.broadcasts import (
    BroadcastStatusQuery,
    CancelBroadcast,
    CreateBroadcast,
    SendBroadcasts,
)
from vpnshop.testing.telegram import TelegramEmulator

Factory = Callable[[], UnitOfWork]


class FakeTime:
    """A monotonic clock that only moves when the sender sleeps; records each wait."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds


@pytest.fixture
async def shop(uow_factory: Factory) -> Shop:
    return await make_shop(uow_factory)


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emu:
        yield emu


@pytest.fixture
async def notifier(tg: TelegramEmulator) -> AsyncIterator[TelegramNotifier]:
    async with BotApiClient(BotApiSettings(tg.token, tg.api_url, timeout=5)) as client:
        yield TelegramNotifier(client, max_flood_waits=0)  # the broadcast waits, not it


def sender(
    shop: Shop, notifier: TelegramNotifier, time: FakeTime, rate: float = 25.0
) -> SendBroadcasts:
    return SendBroadcasts(
        shop.deps, notifier, rate=rate, run_for=None, sleep=time.sleep, monotonic=time.monotonic
    )


async def customers(shop: Shop, tg: TelegramEmulator, ids: range) -> dict[int, int]:
    """Customers who started the bot: telegram id -> customer id."""
    out = {}
    for tid in ids:
        tg.add_account(tid, started=True)
        out[tid] = await shop.customer(tid)
    return out


def received(tg: TelegramEmulator, text: str) -> list[int]:
    return sorted(
        int(c.params.raw("chat_id"))
        for c in tg.calls_of("sendMessage")
        if c.params.string("text") == text and c.error is None
    )


async def test_a_broadcast_reaches_each_customer_once_at_the_rate(
    shop: Shop, tg: TelegramEmulator, notifier: TelegramNotifier
) -> None:
    """Every reachable customer gets the text once, paced at the configured rate; a
    blocked one is marked unreachable and counted as failed; banned ones get nothing."""
    ids = await customers(shop, tg, range(2000, 2010))
    tg.accounts[2003].blocked = True
    async with shop.uow() as uow:
        c = await uow.customers.get(ids[2004])
        assert c is not None
        await uow.customers.update(c.banned_as(True))
        await uow.commit()
    created = await CreateBroadcast(shop.deps)(Segment.ALL, "Hello <b>all</b>", actor=ADMIN)
    assert created.pending == 9
    time = FakeTime()
    assert await sender(shop, notifier, time, rate=10)() == 8
    assert received(tg, "Hello <b>all</b>") == sorted(set(ids) - {2003, 2004})
    progress = await BroadcastStatusQuery(shop.deps)(created.broadcast.id or 0)
    assert (progress.sent, progress.failed, progress.pending) == (8, 1, 0)
    assert progress.broadcast.status is BroadcastStatus.DONE
    assert time.t == pytest.approx(8 / 10, abs=0.11)  # nine sends, 0.1 s apart
    async with shop.uow() as uow:
        blocked = await uow.customers.get(ids[2003])
    assert blocked is not None and blocked.unreachable


async def test_429_waits_exactly_retry_after_and_sends_once(
    shop: Shop, tg: TelegramEmulator, notifier: TelegramNotifier
) -> None:
    """A flood limit waits exactly retry_after and then sends the same message once."""
    await customers(shop, tg, range(2100, 2103))
    await CreateBroadcast(shop.deps)(Segment.ALL, "flood", actor=ADMIN)
    tg.throttle_next(retry_after=7, method="sendMessage")
    time = FakeTime()
    await sender(shop, notifier, time)()
    assert 7.0 in time.waits
    assert received(tg, "flood") == [2100, 2101, 2102]


async def test_a_sender_that_died_mid_message_never_resends_it(
    shop: Shop, tg: TelegramEmulator, notifier: TelegramNotifier
) -> None:
    """The row left in flight by a killed sender is recorded as interrupted and not sent
    again; everyone else gets the message exactly once."""
    ids = await customers(shop, tg, range(2200, 2205))
    created = await CreateBroadcast(shop.deps)(Segment.ALL, "resume", actor=ADMIN)
    bid = created.broadcast.id or 0
    async with shop.uow() as uow:  # what a sender does before it is killed mid-send
        inflight = await uow.broadcasts.next_recipient(bid, shop.clock.now())
        await uow.commit()
    assert inflight is not None
    await sender(shop, notifier, FakeTime())()
    assert received(tg, "resume") == sorted(set(ids) - {inflight.telegram_id})
    progress = await BroadcastStatusQuery(shop.deps)(bid)
    assert (progress.sent, progress.failed, progress.in_flight) == (4, 1, 0)


async def test_cancel_stops_the_broadcast(
    shop: Shop, tg: TelegramEmulator, notifier: TelegramNotifier
) -> None:
    """A cancelled broadcast sends nothing more; its pending recipients are skipped."""
    await customers(shop, tg, range(2300, 2304))
    created = await CreateBroadcast(shop.deps)(Segment.ALL, "cancelled", actor=ADMIN)
    bid = created.broadcast.id or 0
    assert await CancelBroadcast(shop.deps)(bid, actor=ADMIN)
    assert not await CancelBroadcast(shop.deps)(bid, actor=ADMIN)
    assert await sender(shop, notifier, FakeTime())() == 0
    progress = await BroadcastStatusQuery(shop.deps)(bid)
    assert progress.skipped == 4 and progress.broadcast.status is BroadcastStatus.CANCELLED
    assert received(tg, "cancelled") == []


async def test_segments_choose_their_customers(shop: Shop, tg: TelegramEmulator) -> None:
    """active, expired and never-paid select exactly the customers they name."""
    ids = await customers(shop, tg, range(2400, 2404))
    await shop.extend(ids[2400], 30, actor=ADMIN, reason="a")  # active
    await shop.extend(ids[2401], 1, actor=ADMIN, reason="b")  # will expire
    await shop.credit(ids[2402], Money(50000, RUB), kind=EntryKind.TOPUP, key="k", actor=ADMIN)
    await shop.pay_from_balance(ids[2402], "month", RUB, actor=ADMIN)
    shop.clock.advance(timedelta(days=2))
    create = CreateBroadcast(shop.deps)

    async def who(segment: Segment) -> list[int]:
        p = await create(segment, f"to {segment}", actor=ADMIN)
        async with shop.uow() as uow:
            rows = []
            while (
                r := await uow.broadcasts.next_recipient(p.broadcast.id or 0, shop.clock.now())
            ) is not None:
                rows.append(r.telegram_id)
        return sorted(rows)

    assert await who(Segment.ACTIVE) == [2400, 2402]
    assert await who(Segment.EXPIRED) == [2401]
    assert await who(Segment.NEVER_PAID) == [2400, 2401, 2403]
    assert await who(Segment.ALL) == [2400, 2401, 2402, 2403]


class Watching:
    """A Notifier that sends through the real one and, before each message, records how
    many of the broadcast's recipients are in flight in the database."""

    def __init__(self, inner: TelegramNotifier, shop: Shop, broadcast_id: int) -> None:
        self.inner, self.shop, self.broadcast_id = inner, shop, broadcast_id
        self.in_flight: list[int] = []

    async def send(self, chat_id: int, message: Message) -> None:
        progress = await BroadcastStatusQuery(self.shop.deps)(self.broadcast_id)
        self.in_flight.append(progress.in_flight)
        await self.inner.send(chat_id, message)


async def test_at_most_two_batches_are_in_flight_and_the_pace_holds(
    shop: Shop, tg: TelegramEmulator, notifier: TelegramNotifier
) -> None:
    """Recipients are claimed in batches of half a second's sends, never more than two
    batches in flight (the kill -9 bound), and the sends keep the fixed schedule."""
    await customers(shop, tg, range(2500, 2523))
    created = await CreateBroadcast(shop.deps)(Segment.ALL, "batched", actor=ADMIN)
    watching = Watching(notifier, shop, created.broadcast.id or 0)
    time = FakeTime()
    run = SendBroadcasts(
        shop.deps, watching, rate=10, run_for=None, sleep=time.sleep, monotonic=time.monotonic
    )
    assert run.batch_size == 5
    assert await run() == 23
    assert max(watching.in_flight) <= 2 * run.batch_size
    assert max(watching.in_flight) > 1  # claimed ahead, not one at a time
    assert time.t == pytest.approx(22 / 10)  # 23 sends, 0.1 s apart
    progress = await BroadcastStatusQuery(shop.deps)(created.broadcast.id or 0)
    assert (progress.sent, progress.in_flight, progress.broadcast.status) == (
        23,
        0,
        BroadcastStatus.DONE,
    )


async def test_a_sender_stopped_mid_batch_puts_back_what_it_did_not_send(
    shop: Shop, tg: TelegramEmulator, notifier: TelegramNotifier
) -> None:
    """A sender cancelled mid-batch records what it sent and puts back every claimed
    recipient it never handed to Telegram; the next run sends each of those once."""
    ids = await customers(shop, tg, range(2600, 2620))
    created = await CreateBroadcast(shop.deps)(Segment.ALL, "stopped", actor=ADMIN)
    bid = created.broadcast.id or 0
    time = FakeTime()
    stopped = asyncio.Event()

    async def sleep_then_stop(seconds: float) -> None:
        await time.sleep(seconds)
        if len(time.waits) == 3:  # before the fourth message of the first batch of 5
            stopped.set()
            await asyncio.Event().wait()  # cancelled here

    run = SendBroadcasts(
        shop.deps, notifier, rate=10, run_for=None, sleep=sleep_then_stop, monotonic=time.monotonic
    )
    task = asyncio.create_task(run())
    await stopped.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    progress = await BroadcastStatusQuery(shop.deps)(bid)
    assert (progress.sent, progress.in_flight, progress.pending) == (3, 1, 16)
    await sender(shop, notifier, FakeTime())()
    assert received(tg, "stopped") == sorted(set(ids) - {2603})  # the one in flight
