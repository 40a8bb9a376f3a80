"""Finalised payments per second, on SQLite and on PostgreSQL, against a floor.

The product: ConfirmPayment for pending top-up payments (find the payment, check the
amount, one conditional UPDATE to succeeded, a ledger entry and the balance, an outbox
job, an audit row, commit). The floor, measured on the same engine in the same run: a
plain single-row UPDATE per transaction. Rounds alternate product and floor (A B A B)
because hypervisor steal varies between runs; medians and their ratio are printed.
PostgreSQL runs with fsync, synchronous_commit and full_page_writes on (``_durable.py``),
and the settings it ran with are printed.

    python bench/bench_finalise.py [--payments 400] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from vpnshop.adapters.clock import SystemClock, UlidIds
from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.migrate import upgrade
from vpnshop.adapters.storage.settlers import payment_settler
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.domain.customer import Customer
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.ports.payments import EventKind, PaymentEvent
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps
from vpnshop.services.outcome import Outcome


async def gather_bounded(jobs: list[Callable[[], Awaitable[object]]], limit: int) -> None:
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(limit)))


async def seed(engine: object, deps: Deps, n: int, tag: str) -> list[str]:
    """Create n pending 100 RUB top-up payments for one customer each."""
    now = datetime.now(UTC)
    ids = []
    async with SqlAlchemyUnitOfWork(engine) as uow:  # type: ignore[arg-type]
        for i in range(n):
            customer = await uow.customers.add(
                Customer(id=None, telegram_id=hash((tag, i)) & 0x7FFFFFFFFFFF, created_at=now)
            )
            assert customer.id is not None
            order = Order(
                id=deps.ids.new_id(),
                customer_id=customer.id,
                kind=OrderKind.TOPUP,
                amount=Money(10000, RUB),
                list_price=Money(10000, RUB),
                created_at=now,
            )
            pid = deps.ids.new_id()
            payment = Payment(
                id=pid,
                order_id=order.id,
                customer_id=customer.id,
                provider="bench",
                amount=order.amount,
                status=PaymentStatus.PENDING,
                external_id=f"ext-{pid}",
                created_at=now,
                updated_at=now,
            )
            await uow.orders.add(order)
            await uow.payments.add(payment)
            ids.append(payment.id)
        await uow.commit()
    return ids


async def product_round(engine: object, deps: Deps, n: int, concurrency: int, tag: str) -> float:
    settler = payment_settler(engine)  # type: ignore[arg-type]
    confirm = ConfirmPayment(deps, settler=settler)  # as bootstrap wires it
    ids = await seed(engine, deps, n, tag)
    outcomes: list[Outcome] = []

    def job(pid: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:
            outcomes.append(
                await confirm(
                    PaymentEvent(
                        provider="bench",
                        kind=EventKind.PAYMENT_SUCCEEDED,
                        dedupe_key=pid,
                        payment_ref=pid,
                        external_id=f"ext-{pid}",
                        amount=Money(10000, RUB),
                    )
                )
            )

        return run

    start = time.perf_counter()
    try:
        await gather_bounded([job(p) for p in ids], concurrency)
        elapsed = time.perf_counter() - start
    finally:
        if settler is not None:
            await settler.aclose()
    assert outcomes.count(Outcome.CONFIRMED) == n, outcomes[:3]
    return n / elapsed


async def floor_round(engine: object, deps: Deps, n: int, concurrency: int, tag: str) -> float:
    ids = await seed(engine, deps, n, tag)

    def job(pid: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:
            async with engine.begin() as conn:  # type: ignore[attr-defined]
                await conn.execute(
                    sa.update(t.payments)
                    .where(t.payments.c.id == pid)
                    .values(updated_at=datetime.now(UTC))
                )

        return run

    start = time.perf_counter()
    await gather_bounded([job(p) for p in ids], concurrency)
    return n / (time.perf_counter() - start)


async def measure(label: str, url: str, args: argparse.Namespace) -> None:
    engine = create_engine(url, pool_size=args.concurrency)
    await upgrade(engine)
    deps = Deps(uow=lambda: SqlAlchemyUnitOfWork(engine), clock=SystemClock(), ids=UlidIds())
    product: list[float] = []
    floor: list[float] = []
    try:
        await product_round(engine, deps, 20, args.concurrency, "warm")  # warm caches
        for r in range(args.rounds):
            product.append(
                await product_round(engine, deps, args.payments, args.concurrency, f"p{r}")
            )
            floor.append(await floor_round(engine, deps, args.payments, args.concurrency, f"f{r}"))
    finally:
        await engine.dispose()
    p, f = statistics.median(product), statistics.median(floor)
    print(
        f"{label:<11} finalised payments/s: {p:8.0f}   floor (1-row UPDATE tx)/s: {f:8.0f}"
        f"   ratio: {p / f:5.2f}   rounds: {[round(x) for x in product]} vs "
        f"{[round(x) for x in floor]}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"{args.payments} payments x {args.rounds} rounds, {args.concurrency} concurrent")
    with tempfile.TemporaryDirectory() as tmp:
        await measure("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args)
    if args.no_postgres:
        return
    from _durable import durable_cluster, print_settings  # bench/ is the script's directory

    with durable_cluster() as cluster:
        cluster.create_database("bench")
        url = cluster.sqlalchemy_url("bench")
        engine = create_engine(url)
        try:
            await print_settings(engine)
        finally:
            await engine.dispose()
        await measure("PostgreSQL", url, args)


if __name__ == "__main__":
    asyncio.run(main())
