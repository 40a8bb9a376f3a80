"""Customer jobs at scale, on PostgreSQL (durable settings, ``_durable.py``), bounded.

1. demo-data: customers written per second (target: 1,000,000 in under a minute).
2. Due-scan: the reminder scan (one offset) over 100,000 and then 1,000,000 subscriptions
   (demo-data makes about 0.8 per customer, so customers are added until the table holds
   that many) with the same 10,000 due. Floor, same run: enqueueing the same 10,000 outbox
   jobs without any scan, in the scan's statements (one multi-row INSERT per 1,000).
   Target: <= 5 s at 1,000,000, and the two sizes within 1.5x.
3. Broadcast: N recipients through the Telegram emulator (its own process, so its memory
   and CPU are not ours) at the configured rate: the achieved rate against it (target:
   within 1 %), and this process's RSS at 10 % and 100 % sent.

The machine is shared (2 cores, other work running): every number is one run's.

    python bench/bench_customer_jobs.py [--subscriptions 1000000] [--recipients 100000]
        [--rate 25] [--skip-broadcast] [--skip-scan]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.adapters.clock import UlidIds
from vpnshop.adapters.storage.demo_data import generate_demo_data
from vpnshop.adapters.storage.migrate import upgrade
from vpnshop.adapters.telegram import BotApiClient, BotApiSettings, TelegramNotifier
from vpnshop.bootstrap import open_engine, open_storage, wire
from vpnshop.config import Settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.broadcast import Segment
from vpnshop.domain.outbox import JobKind
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.services.broadcasts import CreateBroadcast, SendBroadcasts
from vpnshop.services.deps import Deps, outbox_job
from vpnshop.services.reminders import SendReminders
from vpnshop.testing.fakes import FakeClock

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=2000)  # demo-data's "now": its expiries are far from NOW
DUE = 10_000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def reset_due(engine: AsyncEngine) -> None:
    """The same 10,000 subscriptions (the first of reachable customers) due within the hour
    before NOW+1d;
    no reminder enqueued yet, no scan position."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM outbox"))
        await conn.execute(sa.text("DELETE FROM job_cursors"))
        await conn.execute(
            sa.text(
                "UPDATE subscriptions SET expires_at = CAST(:t AS timestamptz) "
                "+ (id % 3600) * interval '1 second' WHERE id IN (SELECT s.id FROM "
                "subscriptions s JOIN customers c ON c.id = s.customer_id "
                "WHERE NOT c.banned AND NOT c.unreachable ORDER BY s.id LIMIT :n)"
            ),
            {"t": NOW + timedelta(days=1) - timedelta(hours=1), "n": DUE},
        )
        await conn.execute(sa.text("ANALYZE subscriptions"))


async def scan_once(deps: Deps) -> tuple[float, int]:
    started = time.perf_counter()
    n = await SendReminders(deps, offsets=(86400,), batch=1000).scan(86400)
    return time.perf_counter() - started, n


async def floor_once(deps: Deps) -> float:
    """The due work without the scan: the same 10,000 outbox jobs, in the same batches and
    statements (one multi-row INSERT per 1,000, one commit each)."""
    async with deps.uow() as uow:
        await uow.commit()
    started = time.perf_counter()
    for start in range(0, DUE, 1000):
        async with deps.uow() as uow:
            jobs = [
                outbox_job(NOW, JobKind.NOTIFY_CUSTOMER, f"floor:{i}", customer_id=1)
                for i in range(start, start + 1000)
            ]
            assert await uow.outbox.add_many(jobs) == len(jobs)
            await uow.commit()
    return time.perf_counter() - started


async def count_subscriptions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT count(*) FROM subscriptions"))).scalar_one())


async def due_scan(url: str, subscriptions: int) -> None:
    async with AsyncExitStack() as stack:
        engine = open_engine(url, stack)
        await upgrade(engine)
        storage = open_storage(engine, stack)
        app = wire(Settings(), storage=storage, clock=FakeClock(NOW), ids=UlidIds())
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("bench"))
        results: dict[int, tuple[float, float]] = {}
        for size in sorted({min(100_000, subscriptions), subscriptions}):
            subs = await count_subscriptions(engine)
            while subs < size:  # about 0.8 subscriptions per customer; top up in steps
                more = max(1000, int((size - subs) / 0.8))
                started = time.perf_counter()
                await generate_demo_data(engine, more, PAST, seed=size + subs)
                took = time.perf_counter() - started
                print(
                    f"demo-data: +{more:,} customers in {took:.1f} s ({more / took:,.0f}/s)",
                    flush=True,
                )
                subs = await count_subscriptions(engine)
            await reset_due(engine)
            scan, n = await scan_once(app.deps)
            await reset_due(engine)
            floor = await floor_once(app.deps)
            assert n == DUE, n
            results[size] = (scan, floor)
            print(
                f"due-scan over {subs:,} subscriptions, {DUE:,} due: {scan:.2f} s   "
                f"floor (enqueue the same {DUE:,} jobs): {floor:.2f} s   ratio {scan / floor:.2f}",
                flush=True,
            )
        if len(results) == 2:
            small, big = (results[k][0] for k in sorted(results))
            print(
                f"due-scan 1,000,000 vs 100,000 subscriptions: {big / small:.2f}x (target <= 1.5x)"
            )


async def fill(url: str, customers: int) -> None:
    async with AsyncExitStack() as stack:
        engine = open_engine(url, stack)
        await upgrade(engine)
        storage = open_storage(engine, stack)
        app = wire(Settings(), storage=storage, clock=FakeClock(NOW), ids=UlidIds())
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("bench"))
        await generate_demo_data(engine, customers, PAST)


async def broadcast(url: str, recipients: int, rate: float) -> None:
    emu = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EMULATOR,
        str(recipients),
        stdout=asyncio.subprocess.PIPE,
    )
    assert emu.stdout is not None
    api_url, token = (await emu.stdout.readline()).decode().split()
    try:
        async with AsyncExitStack() as stack:
            engine = open_engine(url, stack)
            storage = open_storage(engine, stack)
            deps = Deps(storage, FakeClock(NOW), UlidIds())
            async with engine.begin() as conn:  # recipients: customers 1..N only
                await conn.execute(
                    sa.text("UPDATE customers SET banned = (id > :n), unreachable = false, "
                            "telegram_id = id"),
                    {"n": recipients},
                )  # fmt: skip
            created = await CreateBroadcast(deps)(Segment.ALL, "bench", actor=Actor.system("b"))
            assert created.total == recipients, created.total
            client = await stack.enter_async_context(
                BotApiClient(BotApiSettings(token, api_url, timeout=10))
            )
            sender = SendBroadcasts(deps, TelegramNotifier(client), rate=rate, run_for=None)
            tenth = recipients // 10
            started = time.perf_counter()
            bid = created.broadcast.id or 0
            first = await sender.send(bid, limit=tenth)
            t_tenth = time.perf_counter() - started
            rss_tenth = rss_mib()
            rest = await sender.send(bid)
            took = time.perf_counter() - started
            sent = first + rest
            achieved = (sent - 1) / took  # n sends span n-1 intervals
            print(
                f"broadcast: {sent:,} sent in {took:.1f} s: {achieved:.2f}/s at a configured "
                f"{rate:g}/s ({(achieved / rate - 1) * 100:+.2f} %); RSS {rss_tenth:.0f} MiB at "
                f"{first:,} sent ({t_tenth:.0f} s), {rss_mib():.0f} MiB at {sent:,}",
                flush=True,
            )
    finally:
        emu.kill()
        await emu.wait()


EMULATOR = """
import asyncio, sys
from vpnshop.testing.telegram import TelegramEmulator

async def main():
    async with TelegramEmulator() as tg:
        for i in range(1, int(sys.argv[1]) + 1):
            tg.add_account(i, started=True)
        print(tg.api_url, tg.token, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--skip-broadcast", action="store_true")
    parser.add_argument("--skip-scan", action="store_true")
    args = parser.parse_args()
    from _durable import durable_cluster, print_settings  # bench/ is the script's directory

    with durable_cluster() as cluster:
        cluster.create_database("bench")
        url = cluster.sqlalchemy_url("bench")
        async with AsyncExitStack() as stack:
            await print_settings(open_engine(url, stack))
        if not args.skip_scan:
            await due_scan(url, args.subscriptions)
        if not args.skip_broadcast:
            if args.skip_scan:
                await fill(url, args.recipients)
            await broadcast(url, args.recipients, args.rate)


if __name__ == "__main__":
    asyncio.run(main())
