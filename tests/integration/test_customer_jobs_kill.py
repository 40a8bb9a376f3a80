"""kill -9 of a scheduler mid-broadcast and mid-renewal, then a restart: nothing lost,
nothing doubled, and ``vpnshop ledger verify`` passes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import make_database_url, sql_storage
from vpnshop.adapters.storage.demo_data import generate_demo_data
from vpnshop.bootstrap import Storage, wire
from vpnshop.config import Settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.broadcast import Segment
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.services.broadcasts import BroadcastStatusQuery, CreateBroadcast, SendBroadcasts
from vpnshop.testing.fakes import FakeClock, SequentialIds
from vpnshop.testing.telegram import TelegramEmulator

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_database_url(request, "postgres", tmp_path)


@pytest.fixture
async def storage(url: str) -> AsyncIterator[Storage]:
    async with sql_storage(url) as s:
        yield s


async def child(url: str, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.customer_jobs_child",
        url,
        NOW.isoformat(),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    return proc


async def kill_when(proc: asyncio.subprocess.Process, done: object, at_least: int) -> None:
    """SIGKILL *proc* as soon as ``await done()`` reaches *at_least*."""
    for _ in range(3000):
        if await done() >= at_least:  # type: ignore[operator]
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the child never got far enough to be killed")
    os.kill(proc.pid, signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL


DOUBLED = (
    "SELECT split_part(id, '_', 2) FROM orders WHERE id LIKE 'ar\\_%' "
    "GROUP BY 1 HAVING count(*) > 1"
)
CAN_PAY = (
    "SELECT count(*) FROM subscriptions s JOIN plans p ON p.code = s.plan_code "
    "JOIN balances b ON b.customer_id = s.customer_id AND b.currency = 'RUB' "
    "JOIN customers c ON c.id = s.customer_id "
    "WHERE s.auto_renew AND NOT c.banned AND NOT c.unreachable "
    "AND b.amount_minor >= CAST(p.prices ->> 'RUB' AS bigint)"
)


async def scalar(conn: Any, sql: str) -> int:
    return int((await conn.execute(sa.text(sql))).scalar_one())


async def test_kill_9_mid_broadcast_then_restart(url: str, storage: Storage) -> None:
    """A sender killed mid-broadcast and restarted sends every recipient the message at
    most once, everyone but at most the two batches in flight exactly once."""
    async with TelegramEmulator() as tg:
        app = wire(Settings(), storage=storage, clock=FakeClock(NOW), ids=SequentialIds())
        for tid in range(1, 201):
            tg.add_account(tid, started=True)
            await app.register_customer(tid)
        created = await CreateBroadcast(app.deps)(Segment.ALL, "kill me", actor=Actor.system("t"))

        def delivered() -> Counter[object]:
            return Counter(
                c.params.raw("chat_id") for c in tg.calls_of("sendMessage") if c.error is None
            )

        async def sent() -> int:
            return sum(delivered().values())

        proc = await child(url, "broadcast", tg.api_url, tg.token)
        await kill_when(proc, sent, 40)
        again = await child(url, "broadcast", tg.api_url, tg.token)
        assert again.stdout is not None
        assert (await asyncio.wait_for(again.stdout.readline(), 60)).strip() == b"finished"
        await again.wait()
        chats = delivered()
        assert set(chats.values()) == {1}  # nobody twice
        # the child sends at 50/s: two batches of 25 in flight at most (one second's sends)
        in_flight = 2 * SendBroadcasts(app.deps, app.notifier, rate=50.0).batch_size
        assert len(chats) >= 200 - in_flight  # nobody lost but those in flight
        p = await BroadcastStatusQuery(app.deps)(created.broadcast.id or 0)
        assert p.pending == p.in_flight == 0 and p.sent + p.failed == 200
        assert p.failed <= in_flight


async def test_kill_9_mid_renewal_then_restart(url: str, storage: Storage) -> None:
    """A renewal run killed mid-way and restarted renews every due subscription once
    (with enough balance) and the ledger verifies."""
    app = wire(Settings(), storage=storage, clock=FakeClock(NOW), ids=SequentialIds())
    await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("t"))
    assert storage.engine is not None
    await generate_demo_data(storage.engine, 2000, NOW)
    async with storage.engine.begin() as conn:  # everyone due within the day, auto-renewing
        await conn.execute(
            sa.text(
                "UPDATE subscriptions SET auto_renew = NOT is_trial, "
                "expires_at = CAST(:now AS timestamptz) + (id % 1000) * interval '1 minute'"
            ),
            {"now": NOW},
        )

    async def renewed() -> int:
        async with storage.engine.connect() as conn:  # type: ignore[union-attr]
            q = sa.text("SELECT count(*) FROM orders WHERE id LIKE 'ar\\_%'")
            return int((await conn.execute(q)).scalar_one())

    async with storage.engine.connect() as conn:
        expected = await scalar(conn, CAN_PAY)
    assert expected > 100
    proc = await child(url, "renew")
    await kill_when(proc, renewed, 30)
    again = await child(url, "renew")
    assert again.stdout is not None
    assert (await asyncio.wait_for(again.stdout.readline(), 120)).strip() == b"finished"
    await again.wait()
    async with storage.engine.connect() as conn:
        doubled = (await conn.execute(sa.text(DOUBLED))).all()
        succeeded = await scalar(
            conn,
            "SELECT count(*) FROM payments WHERE id LIKE 'b\\_ar\\_%' AND status = 'succeeded'",
        )
        held = await scalar(conn, "SELECT count(*) FROM holds WHERE status = 'held'")
    assert doubled == []  # no subscription renewed twice for one period
    assert succeeded == await renewed() == expected  # every one that could pay, settled
    assert held == 0  # no money left in limbo
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    verify = subprocess.run(
        [sys.executable, "-m", "vpnshop.cli", "ledger", "verify"],
        env={**env, "VPNSHOP_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
