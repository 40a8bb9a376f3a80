"""Confirmed webhooks per second through the webhook server, against two floors.

For each database (SQLite file; PostgreSQL in a throwaway cluster when its binaries
exist) this creates N pending Crypto Pay payments (through the real checkout and the
Crypto Pay emulator), then POSTs their genuinely signed ``invoice_paid`` updates to the
webhook server on 127.0.0.1 with C concurrent clients, and measures throughput and
p50/p99 latency. The server runs in its own process (bench/_webhook_server.py), as a
deployed one does, apart from this load generator, which is a lean keep-alive HTTP/1.1
client standing in for the providers' machines (its CPU per request is printed). In
the same run, alternating A B A B, it measures two floors:

1. the same client against an aiohttp handler that reads the body and answers 200, in
   a process of its own too;
2. the same database doing the same number of single-row INSERT transactions through
   SQLAlchemy Core with the same concurrency.

It prints numbers (medians of the rounds), the ratios product/floor, the CPU each
process spent per confirmed webhook, and whether the claim holds: at least
:data:`CLAIM_RATE` confirmed webhooks/s and at least :data:`CLAIM_SHARE` of the slower
floor. PostgreSQL runs as production does (fsync, synchronous_commit and full_page_writes
on, ``bench/_durable.py``), and the settings it ran with are printed. Bounded: N
deliveries per round, ROUNDS rounds, and a wall-clock deadline. The numbers of record are
in docs/architecture.md.

    python bench/bench_webhooks.py [--n 1000] [--clients 16] [--rounds 2] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar

import attrs
import sqlalchemy as sa
from _children import end_child  # bench/ is the script's directory
from _durable import (
    durable_cluster,
    migrated_database,
    print_settings,
)

from vpnshop.adapters.payments.cryptopay import CryptoPayGateway, CryptoPaySettings
from vpnshop.adapters.storage.engine import create_engine
from vpnshop.bootstrap import bootstrap
from vpnshop.config import Settings
from vpnshop.domain.actor import Actor
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.testing.cryptopay import CryptoPayEmulator

DEADLINE_SECONDS = 240.0
CLAIM_RATE = 1000.0  # confirmed webhooks per second
CLAIM_SHARE = 0.5  # of the slower of the two floors
T = TypeVar("T")


@attrs.frozen
class Result:
    count: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def run_bounded(jobs: Sequence[Callable[[], Awaitable[None]]], clients: int) -> Result:
    """Run *jobs* with at most *clients* at a time; per-job latency and total time."""
    latencies: list[float] = []
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            t0 = time.perf_counter()
            await job()
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return Result(len(jobs), time.perf_counter() - start, tuple(latencies))


async def gather_bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run *jobs* at most *limit* at a time; their results in the order of *jobs*."""
    results: list[T | None] = [None] * len(jobs)
    todo = iter(enumerate(jobs))

    async def worker() -> None:
        for i, job in todo:
            results[i] = await job()

    await asyncio.gather(*(worker() for _ in range(limit)))
    return [r for r in results if r is not None]


class KeepAliveClient:
    """The providers' side of the benchmark: HTTP/1.1 POSTs over kept-alive connections,
    each request serialised before the clock starts, each answer read by its
    Content-Length. The providers are other machines in production; this stands in for
    them on the same two cores, so it is kept lean (its CPU per request is printed) and
    the no-op floor is measured with it too. A 2xx other than 200 or a closed connection
    is an error, never a silent success."""

    def __init__(self, base: str, connections: int) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self._host, self._port = host, int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._connections = connections

    def request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        head = [f"POST {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle:
            return self._idle.pop()
        return await asyncio.open_connection(self._host, self._port)

    def poster(self, raw: bytes) -> Callable[[], Awaitable[None]]:
        async def post() -> None:
            reader, writer = await self._connection()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            self._idle.append((reader, writer))
            if status != 200:
                raise RuntimeError(f"the server answered {status}")

        return post

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


SERVER = Path(__file__).with_name("_webhook_server.py")
SERVER_PIDS: list[int] = []


def postgres_cpu_seconds() -> float:
    """CPU time of every process named postgres on this machine (the throwaway cluster's
    server and backends): the database's share of the work."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_process(stack: AsyncExitStack, *args: str) -> str:
    """Start bench/_webhook_server.py in its own process (as a deployed webhook server
    runs: its own interpreter and event loop, apart from the load generator); return its
    base URL. It stops when its standard input is closed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVER),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )

    stack.push_async_callback(end_child, proc)
    SERVER_PIDS.append(proc.pid)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"PORT "):
        raise RuntimeError(f"the webhook server did not start: {line!r}")
    return f"http://127.0.0.1:{int(line.split()[1])}"


async def bench_database(label: str, url: str, n: int, clients: int, rounds: int) -> None:
    print(f"\n== {label}: {rounds} rounds x {n} deliveries, {clients} concurrent clients")
    async with AsyncExitStack() as stack:
        emu = await stack.enter_async_context(CryptoPayEmulator())
        gateway = CryptoPayGateway(CryptoPaySettings(token=emu.token, base_url=emu.base_url))
        stack.push_async_callback(gateway.aclose)
        app = await stack.enter_async_context(
            bootstrap(Settings(database_url=url), gateways={"cryptopay": gateway})
        )
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("bench"))
        if label == "PostgreSQL":
            await print_settings(app.engine)
        t0 = time.perf_counter()
        warmup = 4 * clients  # opens the server's pooled connections and prepares statements

        async def prepare(i: int) -> tuple[bytes, dict[str, str]]:
            customer, _ = await app.register_customer(900_000_000 + i)
            assert customer.id is not None
            link = await app.start_checkout(customer.id, "cryptopay", plan_code="month")
            async with app.deps.uow() as uow:
                payment = await uow.payments.get(link.payment_id)
            assert payment is not None
            assert payment.external_id is not None
            emu.mark_paid(payment.external_id)
            return emu.notification_body(payment.external_id)

        deliveries = await gather_bounded(
            [functools.partial(prepare, i) for i in range(n * rounds + warmup)], 16
        )
        print(f"   prepared {len(deliveries)} pending payments in {time.perf_counter() - t0:.1f}s")

        base = await server_process(stack, "product", url, emu.token)
        noop_base = await server_process(stack, "noop")
        floor_engine = create_engine(url)
        stack.push_async_callback(floor_engine.dispose)
        scratch = sa.Table(
            "bench_writes",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("body", sa.Text, nullable=False),
        )
        async with floor_engine.begin() as conn:
            await conn.run_sync(scratch.create, checkfirst=True)
        product_client = KeepAliveClient(base, clients)
        noop_client = KeepAliveClient(noop_base, clients)
        stack.push_async_callback(product_client.aclose)
        stack.push_async_callback(noop_client.aclose)
        path = "/webhooks/cryptopay"
        product_posts = [
            product_client.poster(product_client.request(path, b, h)) for b, h in deliveries
        ]
        noop_posts = [noop_client.poster(noop_client.request(path, b, h)) for b, h in deliveries]

        await run_bounded(product_posts[:warmup], clients)
        await run_bounded(noop_posts[:warmup], clients)
        product_posts, noop_posts = product_posts[warmup:], noop_posts[warmup:]
        server_cpu: list[float] = []
        client_cpu: list[float] = []
        db_cpu: list[float] = []
        product: list[Result] = []
        http_floor: list[Result] = []
        db_floor: list[Result] = []
        next_row = iter(range(1, 10**9))
        for r in range(rounds):
            batch = product_posts[r * n : (r + 1) * n]
            server_pid = SERVER_PIDS[-2]  # the product server (the no-op one came after)
            cpu_before, me_before = cpu_seconds(server_pid), time.process_time()
            db_before = postgres_cpu_seconds()
            product.append(await run_bounded(batch, clients))
            server_cpu.append((cpu_seconds(server_pid) - cpu_before) / len(batch))
            client_cpu.append((time.process_time() - me_before) / len(batch))
            db_cpu.append((postgres_cpu_seconds() - db_before) / len(batch))
            http_floor.append(await run_bounded(noop_posts[r * n : (r + 1) * n], clients))

            def writer(row: int) -> Callable[[], Awaitable[None]]:
                async def write() -> None:
                    async with floor_engine.begin() as conn:
                        await conn.execute(sa.insert(scratch).values(id=row, body="x" * 64))

                return write

            db_floor.append(await run_bounded([writer(next(next_row)) for _ in batch], clients))

        async with app.engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM payments WHERE status = 'succeeded'")
            paid = (await conn.execute(query)).scalar_one()
        if paid != n * rounds + warmup:
            print(f"   WARNING: {paid} of {n * rounds + warmup} payments succeeded")

        def show(name: str, results: list[Result]) -> float:
            rate = statistics.median(r.rate for r in results)
            p50 = statistics.median(r.pct(0.50) for r in results)
            p99 = statistics.median(r.pct(0.99) for r in results)
            rates = ", ".join(f"{x.rate:.0f}" for x in results)
            print(f"   {name:<34} {rate:8.0f}/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  [{rates}]")
            return rate

        a = show("confirmed webhooks (product)", product)
        b = show("floor 1: no-op aiohttp handler", http_floor)
        c = show("floor 2: 1-row INSERT transactions", db_floor)
        print(f"   product / no-op HTTP floor: {a / b:.3f}   product / DB write floor: {a / c:.3f}")
        holds = a >= CLAIM_RATE and a >= CLAIM_SHARE * min(b, c)
        print(
            f"   claim (>= {CLAIM_RATE:,.0f}/s and >= {CLAIM_SHARE:.0%} of the slower floor, "
            f"{min(b, c):,.0f}/s): {'HOLDS' if holds else 'DOES NOT HOLD'} at {a:,.0f}/s "
            f"({a / min(b, c):.2f}x the slower floor)"
        )
        server = f"server process {statistics.median(server_cpu) * 1000:.2f} ms"
        client = f"load generator {statistics.median(client_cpu) * 1000:.2f} ms"
        database = (
            f"PostgreSQL processes {statistics.median(db_cpu) * 1000:.2f} ms"
            if label == "PostgreSQL"
            else "SQLite runs inside the server process"
        )
        print(f"   CPU per confirmed webhook: {server}, {client}, {database}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="deliveries per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    async def everything() -> None:
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bench.db"
                await bench_database(
                    "SQLite", f"sqlite+aiosqlite:///{path}", args.n, args.clients, args.rounds
                )
        if args.no_postgres:
            return
        from vpnshop.testing.pgcluster import PostgresUnavailableError

        try:
            cluster = durable_cluster().start()
        except PostgresUnavailableError as exc:
            print(f"\n== PostgreSQL skipped: {exc}")
            return
        try:
            url = await migrated_database(cluster)
            await bench_database("PostgreSQL", url, args.n, args.clients, args.rounds)
        finally:
            cluster.stop()

    try:
        await asyncio.wait_for(everything(), timeout=DEADLINE_SECONDS)
    except TimeoutError:
        print(f"\nstopped at the {DEADLINE_SECONDS:.0f}s deadline")


if __name__ == "__main__":
    from vpnshop.cli import run_async  # uvloop, as the server uses

    async def _main() -> int:
        await main()
        return 0

    run_async(_main())
