"""Outbox latency under load: payment committed -> panel user created and message in the
chat, on PostgreSQL.

R confirmed payments per second for S seconds (default 100/s for 60 s) are delivered as
genuinely signed Crypto Pay ``invoice_paid`` webhooks, open loop (one every 1/R s, not
waiting for answers), to ``vpnshop run webhooks`` in its own process, configured with the
panel (the Remnawave emulator in this process) and the bot token with
``VPNSHOP_BOT_API_URL`` (the Telegram Bot API emulator in its own process,
bench/_telegram_process.py, where every paying customer is a user who started the bot), so
that it drains its own outbox: each commit wakes its drain loop at once, jobs run
concurrently. For every payment it measures the time from the webhook's answer (the
payment is committed before the server answers) to the moment the panel emulator finished
creating that customer's user, and to the moment the "paid" message reached that
customer's chat in the Telegram emulator. It prints p50 and p99 of each next to its
floor, the emulator's own answer time for the same calls (an update cannot be faster than
the other side answers), with the ratios, and the CPU each process spent (the Telegram
emulator's apart: Telegram does not run on the shop's cores). Targets, for both: p50 < 1 s
and p99 < 3 s.

PostgreSQL runs with production's durability settings (bench/_durable.py); the settings
it ran with are printed. Bounded: R x S deliveries and a wall-clock deadline.

    python bench/bench_outbox_latency.py [--rate 100] [--seconds 60]
    python bench/bench_outbox_latency.py --seconds 10 --rate 20    # the short mode
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import attrs
from _durable import (  # bench/ is the script's directory
    durable_cluster,
    migrated_database,
    print_settings,
)
from aiohttp import web

from vpnshop.bootstrap import bootstrap
from vpnshop.config import parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.plan import GIB, Plan
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.pgcluster import PostgresUnavailableError
from vpnshop.testing.remnawave import RemnawaveEmulator

DEADLINE_SECONDS = 420.0
FIRST_ID = 700_000_000  # the first customer's Telegram id
DRAIN_GRACE = 60.0  # seconds after the last delivery for the panel to catch up
TARGET_P50, TARGET_P99 = 1.0, 3.0
T = TypeVar("T")


@attrs.define
class Timings:
    committed: dict[int, float] = attrs.Factory(dict)  # telegram id -> webhook answered
    panel: dict[int, float] = attrs.Factory(dict)  # telegram id -> panel user created
    chat: dict[int, float] = attrs.Factory(dict)  # telegram id -> first message in the chat
    panel_answers: list[float] = attrs.Factory(list)  # the emulator's own answer times
    chat_answers: list[float] = attrs.Factory(list)  # the Telegram emulator's answer times


class TimedPanel(RemnawaveEmulator):
    """The emulator, timing its own answers and when each customer's user was created."""

    timings: Timings

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        response = await super()._entry(request)
        done = time.perf_counter()
        self.timings.panel_answers.append(done - started)
        if request.method == "POST" and request.path == "/api/users" and response.status < 300:
            body = json.loads(await request.read())  # aiohttp keeps the body read once
            if isinstance(body.get("telegramId"), int):
                self.timings.panel.setdefault(body["telegramId"], done)
        return response


async def gather_bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    results: list[Any] = [None] * len(jobs)
    queue = iter(enumerate(jobs))

    async def worker() -> None:
        for i, job in queue:
            results[i] = await job()

    await asyncio.gather(*(worker() for _ in range(limit)))
    return results


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of *pid* and its children, the exited ones included (PostgreSQL's
    backends are children of the postmaster); 0 when it is gone."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
    except (OSError, IndexError, ValueError):
        return 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # a live child: its own time (cutime counts it once exited)
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@attrs.define
class CpuMeter:
    """CPU seconds spent by each part of the run while the load lasts."""

    pids: dict[str, int]
    start: dict[str, float] = attrs.Factory(dict)
    wall: float = 0.0

    def begin(self) -> None:
        self.start = {name: self._now(name) for name in self.pids}
        self.start["load generator + panel emulator"] = time.process_time()
        self.wall = time.perf_counter()

    def _now(self, name: str) -> float:
        return cpu_seconds(self.pids[name])

    def report(self, payments: int) -> None:
        wall = time.perf_counter() - self.wall
        used = {name: self._now(name) - self.start[name] for name in self.pids}
        used["load generator + panel emulator"] = (
            time.process_time() - self.start["load generator + panel emulator"]
        )
        cores = os.cpu_count() or 1
        print(f"   CPU over {wall:.1f} s ({cores} cores = {cores * wall:.0f} core-seconds):")
        for name, secs in used.items():
            print(
                f"     {name:32s} {secs:6.1f} s = {secs / wall * 100:5.1f} % of a core,"
                f" {secs / payments * 1000:5.2f} ms per payment"
            )
        total = sum(used.values())
        print(
            f"     {'all of the above':32s} {total:6.1f} s = {total / wall / cores * 100:5.1f} %"
            f" of the machine; load average {os.getloadavg()[0]:.1f}"
        )


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def webhooks_process(stack: AsyncExitStack, env: dict[str, str]) -> tuple[str, int]:
    """``vpnshop run webhooks`` in its own process; returns its base URL and pid."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vpnshop.cli",
        "run",
        "webhooks",
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )

    pumping: list[asyncio.Task[None]] = []

    async def stop() -> None:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.gather(*pumping)

    stack.push_async_callback(stop)
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the webhook server exited before it listened")
            if "webhooks listening on " in line:
                url = line.split("webhooks listening on ", 1)[1].split(";")[0].strip()
                break

    async def pump() -> None:  # keep reading, so that its log never blocks it
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if b"ERROR" in line or b"Traceback" in line:
                sys.stdout.write("   server: " + line.decode())

    pumping.append(asyncio.create_task(pump()))
    return url, proc.pid


@attrs.define
class TelegramProcess:
    """The Telegram emulator's process (bench/_telegram_process.py) as the run sees it."""

    proc: asyncio.subprocess.Process
    api_url: str
    token: str

    async def _ask(self, line: bytes) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(30):
            return (await self.proc.stdout.readline()).decode()

    async def count(self) -> int:
        """How many chats a message has reached so far."""
        return int((await self._ask(b"count")).split()[1])

    async def dump(self) -> tuple[dict[int, float], list[float]]:
        """First message time per chat, and the emulator's answer times."""
        data = json.loads(await self._ask(b"dump"))
        return {int(k): v for k, v in data["chat"].items()}, data["answers"]


async def telegram_process(stack: AsyncExitStack, first_id: int, count: int) -> TelegramProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_telegram_process.py")),
        "--first-id",
        str(first_id),
        "--count",
        str(count),
        "--lifetime",
        str(DEADLINE_SECONDS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**28,  # the dump is one JSON line
    )

    async def stop() -> None:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    stack.push_async_callback(stop)
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = (await proc.stdout.readline()).decode().split()
    if not line or line[0] != "ready":
        raise RuntimeError("the Telegram emulator exited before it listened")
    return TelegramProcess(proc, line[1], line[2])


async def run(
    url: str, rate: float, seconds: float, postmaster: int, concurrency: int | None
) -> None:
    n = int(rate * seconds)
    timings = Timings()
    async with AsyncExitStack() as stack:
        panel = TimedPanel("3.3.2")
        panel.timings = timings
        await stack.enter_async_context(panel)
        cp = await stack.enter_async_context(CryptoPayEmulator())
        tg = await telegram_process(stack, FIRST_ID, n)
        env = {
            "VPNSHOP_DATABASE_URL": url,
            "VPNSHOP_CRYPTOPAY_TOKEN": cp.token,
            "VPNSHOP_CRYPTOPAY_API_URL": cp.base_url,
            "VPNSHOP_PANEL_URL": panel.base_url,
            "VPNSHOP_PANEL_TOKEN": panel.token,
            "VPNSHOP_BOT_TOKEN": tg.token,
            "VPNSHOP_BOT_API_URL": tg.api_url,
            "VPNSHOP_WEBHOOKS_PORT": "0",
            "VPNSHOP_LOG_LEVEL": "info",  # the server says where it listens at info
        }
        if concurrency is not None:
            env["VPNSHOP_OUTBOX_CONCURRENCY"] = str(concurrency)
        print(f"   outbox concurrency: {concurrency or 'the default'}")
        app = await stack.enter_async_context(bootstrap(parse_settings(env)))
        assert app.engine is not None
        await print_settings(app.engine)
        plan = Plan(
            code="month",
            names={"en": "Month"},
            duration_days=30,
            prices={"RUB": Money(19900, RUB)},
            traffic_limit_bytes=50 * GIB,
            device_limit=3,
            squads=(panel.default_squad_uuid,),
        )
        await app.load_plans([plan], actor=Actor.system("bench"))

        async def prepare(i: int) -> tuple[int, bytes, dict[str, str]]:
            telegram_id = FIRST_ID + i
            customer, _ = await app.register_customer(telegram_id)
            assert customer.id is not None
            link = await app.start_checkout(customer.id, "cryptopay", plan_code="month")
            async with app.deps.uow() as uow:
                payment = await uow.payments.get(link.payment_id)
            assert payment is not None
            assert payment.external_id is not None
            cp.mark_paid(payment.external_id)
            body, headers = cp.notification_body(payment.external_id)
            return telegram_id, body, headers

        t0 = time.perf_counter()
        deliveries = await gather_bounded([functools.partial(prepare, i) for i in range(n)], 16)
        print(f"   prepared {n} pending payments in {time.perf_counter() - t0:.1f}s")
        base, server_pid = await webhooks_process(stack, env)
        meter = CpuMeter(
            {
                "webhook server + its drain": server_pid,
                "PostgreSQL": postmaster,
                "Telegram emulator (not the shop)": tg.proc.pid,
            }
        )
        print(f"   webhook server (its own process, draining its own outbox): {base}")

        failures = 0
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def deliver(telegram_id: int, body: bytes, headers: dict[str, str]) -> None:
                nonlocal failures
                async with http.post(f"{base}/webhooks/cryptopay", data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        timings.committed[telegram_id] = time.perf_counter()
                    else:
                        failures += 1

            tasks = []
            meter.begin()
            start = time.perf_counter()
            for i, (telegram_id, body, headers) in enumerate(deliveries):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(deliver(telegram_id, body, headers)))
            await asyncio.gather(*tasks)
            sent = time.perf_counter() - start
        print(f"   delivered {n} webhooks in {sent:.1f}s ({n / sent:.0f}/s); {failures} not 200")
        waited = time.perf_counter()
        while len(timings.panel) < len(timings.committed):
            if time.perf_counter() - waited > DRAIN_GRACE:
                break
            await asyncio.sleep(0.1)
        while await tg.count() < len(timings.committed):
            if time.perf_counter() - waited > DRAIN_GRACE:
                break
            await asyncio.sleep(0.1)
        meter.report(len(timings.committed) or 1)
        timings.chat, timings.chat_answers = await tg.dump()
        report(timings)


def latency_lines(
    what: str, committed: dict[int, float], seen: dict[int, float], answers: list[float], floor: str
) -> tuple[float, float, int]:
    """Print committed -> *what* with its floor and ratios; returns p50, p99, missing."""
    latencies = [seen[k] - committed[k] for k in committed if k in seen]
    missing = len(committed) - len(latencies)
    floor50, floor99 = pct(answers, 0.5), pct(answers, 0.99)
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    print(f"   {what} for {len(latencies)} of {len(committed)} payments")
    print(
        f"   committed -> {what:20s} p50 {p50 * 1000:8.1f} ms  p99 {p99 * 1000:8.1f} ms"
        f"  max {max(latencies, default=0) * 1000:8.1f} ms"
        f"  mean {statistics.fmean(latencies) * 1000 if latencies else float('nan'):8.1f} ms"
    )
    print(
        f"   floor: {floor} ({len(answers)} calls)"
        f"  p50 {floor50 * 1000:8.1f} ms  p99 {floor99 * 1000:8.1f} ms"
    )
    print(f"   ratio to the floor: p50 {p50 / floor50:.1f}x  p99 {p99 / floor99:.1f}x")
    return p50, p99, missing


def report(t: Timings) -> None:
    holds = True
    for what, seen, answers, floor in (
        ("panel user", t.panel, t.panel_answers, "the panel emulator's answer"),
        ("message in the chat", t.chat, t.chat_answers, "the Telegram emulator's answer"),
    ):
        p50, p99, missing = latency_lines(what, t.committed, seen, answers, floor)
        holds = holds and p50 < TARGET_P50 and p99 < TARGET_P99 and missing == 0
    print(
        f"   target p50 < {TARGET_P50:.0f} s and p99 < {TARGET_P99:.0f} s for both, none missing: "
        + ("HOLDS" if holds else "DOES NOT HOLD")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="payments per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--outbox-concurrency", type=int, help="VPNSHOP_OUTBOX_CONCURRENCY of the server"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"== outbox latency: {args.rate:.0f} payments/s for {args.seconds:.0f} s, PostgreSQL")

    async def everything() -> None:
        try:
            cluster = durable_cluster().start()
        except PostgresUnavailableError as exc:
            print(f"   PostgreSQL skipped: {exc}")
            return
        try:
            url = await migrated_database(cluster)
            postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
            await run(url, args.rate, args.seconds, postmaster, args.outbox_concurrency)
        finally:
            cluster.stop()

    try:
        await asyncio.wait_for(everything(), timeout=DEADLINE_SECONDS)
    except TimeoutError:
        print(f"\nstopped by a timeout (the whole run is bounded by {DEADLINE_SECONDS:.0f} s)")


if __name__ == "__main__":
    from vpnshop.cli import run_async  # uvloop, as the server uses

    async def _main() -> int:
        await main()
        return 0

    run_async(_main())
