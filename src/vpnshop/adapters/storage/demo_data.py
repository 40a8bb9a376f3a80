"""``vpnshop demo-data``: realistic customers, subscriptions, payments and ledger for
benchmarks and demos, written in bulk (PostgreSQL: binary COPY through asyncpg; SQLite:
batched inserts). Every balance is the sum of its ledger entries, so ``vpnshop ledger
verify`` passes on the result.

Deterministic for a seed; ids continue after the rows already stored, so it can be run
on a database that has data, and twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vpnshop.adapters.storage import tables as t

CHUNK = 20_000
PROVIDERS = ("yookassa", "cryptopay", "freekassa")
Progress = Callable[[int, int], None]  # (done, total)


@attrs.frozen
class DemoPlan:
    code: str
    days: int
    price_minor: int  # in RUB
    traffic_limit_bytes: int
    traffic_reset: str
    device_limit: int | None


@attrs.frozen
class DemoReport:
    customers: int
    subscriptions: int
    payments: int
    ledger_entries: int


@attrs.define
class _Rows:
    customers: list[tuple[Any, ...]] = attrs.field(factory=list)
    subscriptions: list[tuple[Any, ...]] = attrs.field(factory=list)
    orders: list[tuple[Any, ...]] = attrs.field(factory=list)
    payments: list[tuple[Any, ...]] = attrs.field(factory=list)
    ledger: list[tuple[Any, ...]] = attrs.field(factory=list)
    balances: list[tuple[Any, ...]] = attrs.field(factory=list)


COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "id", "telegram_id", "language", "username", "banned", "created_at", "unreachable",
    ),
    "subscriptions": (
        "id", "customer_id", "plan_code", "expires_at", "traffic_limit_bytes", "traffic_reset",
        "device_limit", "squads", "is_trial", "enabled", "auto_renew", "created_at",
        "updated_at",
    ),
    "orders": (
        "id", "customer_id", "kind", "amount_minor", "list_minor", "currency", "plan_code",
        "days", "discount_percent", "created_at",
    ),
    "payments": (
        "id", "order_id", "customer_id", "provider", "external_id", "amount_minor", "currency",
        "status", "refunded_minor", "created_at", "updated_at",
    ),
    "ledger": (
        "id", "customer_id", "amount_minor", "currency", "kind", "idempotency_key", "actor",
        "reference", "created_at",
    ),
    "balances": ("customer_id", "currency", "amount_minor"),
}  # fmt: skip


@attrs.frozen
class _Start:
    customer: int
    telegram: int
    subscription: int
    ledger: int


def _generate(
    rng: random.Random,
    start: _Start,
    offset: int,
    count: int,
    plans: Sequence[DemoPlan],
    now: datetime,
) -> _Rows:
    rows = _Rows()
    empty_squads = "[]"
    for i in range(offset, offset + count):
        cid = start.customer + i
        created = now - timedelta(seconds=rng.randrange(365 * 86400))
        lang = "ru" if rng.random() < 0.7 else "en"
        rows.customers.append(
            (
                cid,
                start.telegram + i,
                lang,
                f"user{cid}",
                rng.random() < 0.005,
                created,
                rng.random() < 0.03,
            )
        )
        r = rng.random()
        if r < 0.8:  # most have a subscription: running, or run out lately
            plan = plans[rng.randrange(len(plans))]
            trial = r < 0.08
            expires = now + timedelta(seconds=rng.randrange(-60 * 86400, 90 * 86400))
            rows.subscriptions.append(
                (
                    start.subscription + i, cid, None if trial else plan.code, expires,
                    plan.traffic_limit_bytes, plan.traffic_reset, plan.device_limit,
                    empty_squads, trial, True, (not trial) and rng.random() < 0.3,
                    created, created,
                )
            )  # fmt: skip
            if not trial:  # what they paid for it
                oid = f"demo_o{cid}"
                paid_at = created + timedelta(seconds=rng.randrange(3600))
                rows.orders.append(
                    (oid, cid, "plan", plan.price_minor, plan.price_minor, "RUB", plan.code,
                     plan.days, 0, paid_at)
                )  # fmt: skip
                provider = PROVIDERS[rng.randrange(len(PROVIDERS))]
                rows.payments.append(
                    (f"demo_p{cid}", oid, cid, provider, f"demo-{provider}-{cid}", plan.price_minor,
                     "RUB", "succeeded", 0, paid_at, paid_at)
                )  # fmt: skip
        if rng.random() < 0.3:  # a balance: topped up, as the ledger says
            amount = rng.randrange(1, 40) * 5000  # 50 to 1950 RUB
            rows.ledger.append(
                (start.ledger + i, cid, amount, "RUB", "topup", f"demo:topup:{cid}",
                 "system:demo-data", f"demo_t{cid}", created)
            )  # fmt: skip
            rows.balances.append((cid, "RUB", amount))
    return rows


async def _maxes(conn: AsyncConnection) -> _Start:
    async def top(col: Any) -> int:
        return int(
            (await conn.execute(sa.select(sa.func.coalesce(sa.func.max(col), 0)))).scalar_one()
        )

    tg = await top(t.customers.c.telegram_id)
    return _Start(
        customer=await top(t.customers.c.id) + 1,
        telegram=max(tg + 1, 7_000_000_000),  # clear of real Telegram ids in a demo
        subscription=await top(t.subscriptions.c.id) + 1,
        ledger=await top(t.ledger.c.id) + 1,
    )


async def _plans(conn: AsyncConnection) -> list[DemoPlan]:
    out = []
    for r in (await conn.execute(sa.select(t.plans).where(t.plans.c.active))).all():
        price = r.prices.get("RUB")
        if price is None:
            continue
        out.append(
            DemoPlan(
                r.code,
                r.duration_days,
                int(price),
                r.traffic_limit_bytes,
                r.traffic_reset,
                r.device_limit,
            )
        )
    return out


async def _copy_pg(conn: AsyncConnection, rows: _Rows) -> None:
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    for table, cols in COLUMNS.items():
        records = getattr(rows, table)
        if records:
            await raw.copy_records_to_table(table, records=records, columns=list(cols))


async def _insert_sqlite(conn: AsyncConnection, rows: _Rows) -> None:
    for table, cols in COLUMNS.items():
        records = getattr(rows, table)
        if not records:
            continue
        tbl = t.metadata.tables[table]
        dicts = [dict(zip(cols, rec, strict=True)) for rec in records]
        if table == "subscriptions":
            for d in dicts:
                d["squads"] = []
        await conn.execute(tbl.insert(), dicts)


# Rows were written with explicit ids: move each id sequence past them.
SEQUENCE_FIXES = tuple(
    sa.text(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - constants
        f"(SELECT coalesce(max(id), 1) FROM {table}))"
    )
    for table in ("customers", "subscriptions", "ledger")
)


async def _fix_sequences(conn: AsyncConnection) -> None:
    for stmt in SEQUENCE_FIXES:
        await conn.execute(stmt)


async def generate_demo_data(
    engine: AsyncEngine,
    customers: int,
    now: datetime,
    *,
    seed: int = 12,
    progress: Progress | None = None,
) -> DemoReport:
    """Write *customers* customers with their subscriptions, payments and ledger; raises
    ValueError when no active plan has a RUB price (load plans first)."""
    pg = engine.dialect.name == "postgresql"
    async with engine.connect() as conn:
        start = await _maxes(conn)
        plans = await _plans(conn)
    if not plans:
        raise ValueError("no active plan with a RUB price: load plans first")
    rng = random.Random(seed)
    totals = [0, 0, 0, 0]
    done = 0
    while done < customers:
        count = min(CHUNK, customers - done)
        rows = _generate(rng, start, done, count, plans, now)
        async with engine.begin() as conn:
            await (_copy_pg if pg else _insert_sqlite)(conn, rows)
        done += count
        totals = [
            totals[0] + len(rows.customers),
            totals[1] + len(rows.subscriptions),
            totals[2] + len(rows.payments),
            totals[3] + len(rows.ledger),
        ]
        if progress is not None:
            progress(done, customers)
    if pg:
        async with engine.begin() as conn:
            await _fix_sequences(conn)
            await conn.execute(sa.text("ANALYZE"))
    return DemoReport(*totals)
