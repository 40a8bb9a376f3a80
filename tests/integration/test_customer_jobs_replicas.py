"""Two schedulers on one PostgreSQL database, each with its own engine and connections,
running the customer jobs at the same time: no reminder, renewal or broadcast message is
done twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import make_database_url, sql_storage
from tests.integration.shop import ADMIN, Shop, make_shop
from vpnshop.adapters.telegram import BotApiClient, BotApiSettings, TelegramNotifier
from vpnshop.domain.broadcast import Segment
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.services.broadcasts import BroadcastStatusQuery, CreateBroadcast, SendBroadcasts
from vpnshop.services.reminders import SendReminders
from vpnshop.services.renewals import RenewFromBalance
from vpnshop.testing.telegram import TelegramEmulator

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Shop, Shop]]:
    url = make_database_url(request, "postgres", tmp_path)
    async with sql_storage(url) as one, sql_storage(url) as two:
        yield await make_shop(one), await make_shop(two)


async def test_two_schedulers_remind_and_renew_once(pair: tuple[Shop, Shop]) -> None:
    """Reminders and renewals run concurrently by two schedulers enqueue each reminder
    once and renew each subscription once per period; the ledger balances."""
    a, b = pair
    price = Money(19900, RUB)
    subs: dict[int, int] = {}
    for n in range(40):
        cid = await a.customer(9000 + n)
        sub = await a.extend(cid, 2 + n % 3, actor=ADMIN, reason=f"g{n}", plan_code="month")
        assert sub.id is not None
        subs[cid] = sub.id
        async with a.uow() as uow:
            await uow.subscriptions.set_auto_renew(sub.id, True)
            await uow.commit()
        if n % 2 == 0:
            await a.credit(cid, Money(50000, RUB), kind=EntryKind.TOPUP, key=f"t{n}", actor=ADMIN)
    jobs = [
        job
        for shop in (a, b)
        for job in (
            SendReminders(shop.deps, batch=7),
            RenewFromBalance(shop.deps, RUB, days_before=1),
        )
    ]
    for _ in range(20):  # five days in 6-hour steps
        await asyncio.gather(*(job() for job in jobs))
        a.clock.advance(timedelta(hours=6))
        b.clock.advance(timedelta(hours=6))
    async with a.uow() as uow:
        pending = await uow.outbox.claim(a.clock.now(), a.clock.now(), 10_000)
        balances = {cid: await uow.ledger.balance(cid, RUB) for cid in subs}
        renewals = [
            p for p in await uow.payments.recent(limit=1000) if p.order_id.startswith("ar_")
        ]
    per_sub = Counter(p.order_id.split("_")[1] for p in renewals)
    assert set(per_sub.values()) == {1} and len(per_sub) == 20  # those with money, once
    for n, cid in enumerate(subs):
        assert balances[cid] == (Money(50000, RUB) - price if n % 2 == 0 else Money(0, RUB))
    reminders = Counter(j.dedupe_key for j in pending if j.dedupe_key.startswith("remind:"))
    assert reminders and set(reminders.values()) == {1}
    low = [j for j in pending if j.dedupe_key.startswith("notify:renew-low:")]
    assert len(low) == 20
    assert await a.verify() == []


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emu:
        yield emu


async def test_two_senders_send_each_message_once(
    pair: tuple[Shop, Shop], tg: TelegramEmulator
) -> None:
    """Two schedulers taking turns at one broadcast (the job is a singleton: one sender
    at a time) give every recipient one message: the second carries on where the first
    stopped."""
    a, b = pair
    for tid in range(9500, 9560):
        tg.add_account(tid, started=True)
        await a.customer(tid)
    created = await CreateBroadcast(a.deps)(Segment.ALL, "twice?", actor=ADMIN)
    bid = created.broadcast.id or 0

    async def nap(_: float) -> None:
        await asyncio.sleep(0)

    async with BotApiClient(BotApiSettings(tg.token, tg.api_url, timeout=5)) as client:
        notifier = TelegramNotifier(client, max_flood_waits=0)
        first, second = (
            SendBroadcasts(shop.deps, notifier, rate=20, run_for=None, sleep=nap) for shop in (a, b)
        )
        counts = [await first.send(bid, limit=25), await second.send(bid)]
    assert sum(counts) == 60 and all(counts)  # both took part
    chats = Counter(c.params.raw("chat_id") for c in tg.calls_of("sendMessage") if c.error is None)
    assert len(chats) == 60 and set(chats.values()) == {1}
    progress = await BroadcastStatusQuery(a.deps)(bid)
    assert (progress.sent, progress.pending, progress.failed) == (60, 0, 0)
