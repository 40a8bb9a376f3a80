"""Does the unit of work's one-statement settle (``AtomicSettlement``) still pay on
PostgreSQL, now that the settlers take the common confirmations?

It serves the general path only: payments the settler does not take (balance purchases,
provider-run subscriptions, promo orders are not eligible anyway). Measured here:
ConfirmPayment without a settler, so every top-up goes through the general path, with
the unit of work's AtomicSettlement (A) and with it switched off, i.e. settle_stepwise
(B), alternating A B A B on one PostgreSQL database; medians and their ratio.

    python bench/bench_atomic_settlement.py [--payments 400] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from bench.bench_finalise import gather_bounded, seed
from vpnshop.adapters.clock import SystemClock, UlidIds
from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.migrate import upgrade
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.settlement import Effects
from vpnshop.ports.payments import EventKind, PaymentEvent
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps
from vpnshop.services.outcome import Outcome


class _Stepwise(SqlAlchemyUnitOfWork):
    def can_settle(self, effects: Effects) -> bool:
        return False


async def round_(engine: object, deps: Deps, n: int, concurrency: int, tag: str) -> float:
    confirm = ConfirmPayment(deps)  # no settler: the general path for every payment
    ids = await seed(engine, deps, n, tag)
    outcomes: list[Outcome] = []

    def job(pid: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:
            event = PaymentEvent(
                provider="bench",
                kind=EventKind.PAYMENT_SUCCEEDED,
                dedupe_key=pid,
                payment_ref=pid,
                external_id=f"ext-{pid}",
                amount=Money(10000, RUB),
            )
            outcomes.append(await confirm(event))

        return run

    start = time.perf_counter()
    await gather_bounded([job(p) for p in ids], concurrency)
    elapsed = time.perf_counter() - start
    assert outcomes.count(Outcome.CONFIRMED) == n, outcomes[:3]
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from vpnshop.testing.pgcluster import PostgresCluster

    with PostgresCluster() as cluster:
        cluster.create_database("bench")
        engine = create_engine(cluster.sqlalchemy_url("bench"), pool_size=args.concurrency)
        await upgrade(engine)
        clock = SystemClock()
        atomic = Deps(uow=lambda: SqlAlchemyUnitOfWork(engine), clock=clock, ids=UlidIds())
        stepwise = Deps(uow=lambda: _Stepwise(engine), clock=clock, ids=UlidIds())
        a: list[float] = []
        b: list[float] = []
        try:
            await round_(engine, atomic, 20, args.concurrency, "warm-a")
            await round_(engine, stepwise, 20, args.concurrency, "warm-b")
            for r in range(args.rounds):
                a.append(await round_(engine, atomic, args.payments, args.concurrency, f"a{r}"))
                b.append(await round_(engine, stepwise, args.payments, args.concurrency, f"b{r}"))
        finally:
            await engine.dispose()
    ma, mb = statistics.median(a), statistics.median(b)
    print(
        f"general path on PostgreSQL, confirmations/s: AtomicSettlement {ma:7.0f}   "
        f"stepwise {mb:7.0f}   ratio {ma / mb:4.2f}   rounds {[round(x) for x in a]} vs "
        f"{[round(x) for x in b]}",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
