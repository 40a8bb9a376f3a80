"""The scheduler as a process (``vpnshop run scheduler``) against the Remnawave and
Crypto Pay emulators over real HTTP, on SQLite and PostgreSQL: it serves /healthz and
/metrics and stops on SIGTERM; two replicas on one PostgreSQL database run no outbox job
twice; kill -9 in the middle of a drain, then a restart, loses and doubles nothing; and a
panel failing half of its calls still gets every paid subscription in the end.

Customers pay through the Crypto Pay emulator and our webhook server in the test process
(which runs no drain loop), so the panel work is left to the scheduler processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import attrs
import pytest

from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.plan import GIB, Plan
from vpnshop.services.drift import CheckPanelDrift
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.fakes import FakeClock
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.server import start_site

from ..conftest import make_database_url
from .test_panel_e2e import PanelShop, buy, rows

TAG = "SCHEDTEST"


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_database_url(request, "postgres", tmp_path)


@attrs.define
class Env:
    shop: PanelShop
    env: dict[str, str]


@asynccontextmanager
async def shop_env(database_url: str) -> AsyncIterator[Env]:
    """Emulators, the App (no drain loop) and the webhook server; *env* configures a
    scheduler process for the same shop."""
    async with RemnawaveEmulator("3.3.2") as emu, CryptoPayEmulator() as cp:
        env = {
            "VPNSHOP_DATABASE_URL": database_url,
            "VPNSHOP_CRYPTOPAY_TOKEN": cp.token,
            "VPNSHOP_CRYPTOPAY_API_URL": cp.base_url,
            "VPNSHOP_PANEL_URL": emu.base_url,
            "VPNSHOP_PANEL_TOKEN": emu.token,
            "VPNSHOP_PANEL_TAG": TAG,
            "VPNSHOP_PANEL_USERNAME_TEMPLATE": "sch_{subscription_id}",
            "VPNSHOP_SCHEDULER_PORT": "0",
            "VPNSHOP_OUTBOX_LEASE": "2",  # a killed holder's jobs come back within ~2 s
            "VPNSHOP_SCHEDULER_INTERVALS": "outbox=0.2",
        }
        clock = FakeClock(datetime.now(UTC))
        async with bootstrap(parse_settings(env), clock=clock) as app:
            plan = Plan(
                code="month",
                names={"en": "Month"},
                duration_days=30,
                prices={"RUB": Money(19900, RUB)},
                traffic_limit_bytes=50 * GIB,
                device_limit=3,
                squads=(emu.default_squad_uuid,),
            )
            await app.load_plans([plan], actor=Actor.system("test"))
            runner, url = await start_site(create_app(app), access_log=False)
            try:
                cp.webhook_url = f"{url}/webhooks/cryptopay"
                yield Env(PanelShop(app, url, clock, emu, cp), env)
            finally:
                await runner.cleanup()


@attrs.define
class Scheduler:
    proc: asyncio.subprocess.Process
    url: str
    log: list[str]


@asynccontextmanager
async def scheduler(env: dict[str, str], cwd: Path) -> AsyncIterator[Scheduler]:
    """A ``vpnshop run scheduler`` process, once it listens; killed if still running."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vpnshop.cli",
        "run",
        "scheduler",
        env=full,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    log: list[str] = []
    url = ""
    async with asyncio.timeout(30):
        while not url:
            line = (await proc.stdout.readline()).decode()
            assert line, "the scheduler exited before it listened:\n" + "".join(log)
            log.append(line)
            if "/healthz and /metrics on " in line:
                url = line.rsplit(" ", 1)[1].strip()

    async def pump() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            log.append(line.decode())

    pumping = asyncio.create_task(pump())
    try:
        yield Scheduler(proc, url, log)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await pumping


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def apply_jobs(app: App) -> list[tuple[str, int]]:
    """(status, attempts) of every apply job."""
    found = await rows(app, "SELECT status, attempts, kind FROM outbox")
    return [(str(r[0]), int(r[1])) for r in found if r[2] == JobKind.APPLY_SUBSCRIPTION]


async def jobs_done(url: str) -> int:
    """The outbox jobs a scheduler process says it completed (its /metrics)."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
        text = await r.text()
    line = next(
        x for x in text.splitlines() if x.startswith('vpnshop_outbox_jobs_total{outcome="done"}')
    )
    return int(float(line.rsplit(" ", 1)[1]))


def shop_users(emu: RemnawaveEmulator) -> list[str]:
    return sorted(u.username for u in emu.users_by_id.values() if u.tag == TAG)


async def buy_many(s: PanelShop, n: int) -> None:
    for _ in range(n):
        await buy(s)


async def all_applied(app: App) -> bool:
    jobs = await apply_jobs(app)
    return bool(jobs) and all(status == "done" for status, _ in jobs)


# -- the process -------------------------------------------------------------------------


async def test_scheduler_serves_health_and_metrics_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    """The process answers /healthz and /metrics, drains the outbox it finds, and exits 0
    on SIGTERM."""
    async with shop_env(database_url) as e:
        await buy_many(e.shop, 2)
        async with scheduler(e.env, tmp_path) as sch:
            await wait_until(lambda: all_applied(e.shop.app), 30)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{sch.url}/healthz") as r:
                    health = await r.json()
                    assert r.status == 200 and health["status"] == "ok"
                    assert {"recheck", "panel_drift"} <= set(health["jobs"])
                async with http.get(f"{sch.url}/metrics") as r:
                    text = await r.text()
            assert 'vpnshop_outbox_jobs_total{outcome="done"}' in text
            assert "vpnshop_scheduler_runs_total" in text
            sch.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(sch.proc.wait(), 20) == 0
        assert len(shop_users(e.shop.emu)) == 2
        assert not any("Traceback" in line for line in sch.log), "".join(sch.log)


def test_the_scheduler_never_imports_aiogram() -> None:
    """Starting the scheduler shell's modules leaves aiogram unimported."""
    code = (
        "import sys, vpnshop_scheduler.server, vpnshop_scheduler.jobs, vpnshop.bootstrap;"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'aiogram'];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- replicas, kill -9, faults ----------------------------------------------------------


@pytest.mark.postgres
async def test_two_schedulers_on_one_postgres_run_no_job_twice(
    pg_database_url: str, tmp_path: Path
) -> None:
    """Two replicas drain one PostgreSQL outbox together: every apply job is claimed
    exactly once and every subscription has exactly one panel user."""
    async with shop_env(pg_database_url) as e:
        e.shop.emu.latency = 0.05  # so that the replicas overlap
        async with scheduler(e.env, tmp_path) as a, scheduler(e.env, tmp_path) as b:
            await buy_many(e.shop, 40)  # while both poll
            await wait_until(lambda: all_applied(e.shop.app), 60)
            done = [await jobs_done(a.url), await jobs_done(b.url)]
            ran_a = sum("apply_subscription" in line for line in a.log)
            ran_b = sum("apply_subscription" in line for line in b.log)
        assert sum(done) == 40 and min(done) > 0, done  # both replicas took a share
        jobs = await apply_jobs(e.shop.app)
        assert len(jobs) == 40 and {attempts for _, attempts in jobs} == {1}
        users = shop_users(e.shop.emu)
        assert len(users) == 40 == len(set(users))
        assert ran_a == ran_b == 0  # no failures logged by either


async def test_kill_9_mid_drain_then_restart_loses_and_doubles_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """A scheduler killed with SIGKILL while applying is restarted: every subscription
    reaches the panel once, no job is lost, and the ledger verifies."""
    n = 30
    async with shop_env(database_url) as e:
        e.shop.emu.latency = 0.1
        await buy_many(e.shop, n)
        async with scheduler({**e.env, "VPNSHOP_OUTBOX_CONCURRENCY": "4"}, tmp_path) as first:

            async def some_done() -> bool:
                return len(shop_users(e.shop.emu)) >= 5

            await wait_until(some_done, 60)
            first.proc.kill()  # SIGKILL: no cleanup, leases held
            await first.proc.wait()
        assert len(shop_users(e.shop.emu)) < n, "killed too late to prove anything"
        started = asyncio.get_running_loop().time()
        async with scheduler(e.env, tmp_path):
            await wait_until(lambda: all_applied(e.shop.app), 60)
        took = asyncio.get_running_loop().time() - started
        users = shop_users(e.shop.emu)
        assert len(users) == n == len(set(users))
        assert took < 30  # the dead holder's leases lapsed in seconds, not minutes
        verify = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vpnshop.cli",
            "ledger",
            "verify",
            env={**{k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}, **e.env},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await verify.communicate()
        assert verify.returncode == 0, out.decode()


async def test_a_panel_failing_half_the_calls_gets_every_subscription(
    database_url: str,
) -> None:
    """With half of the panel's answers errors, retries (the adapter's, then the
    outbox's backoff) bring every paid subscription to the panel, each once."""
    async with shop_env(database_url) as e:
        app, emu = e.shop.app, e.shop.emu
        await buy_many(e.shop, 20)
        emu.error_rate = 0.5
        for _ in range(30):
            await app.outbox.drain(max_rounds=20)
            if await all_applied(app):
                break
            e.shop.clock.advance(timedelta(hours=2))  # past every backoff
        emu.error_rate = 0.0
        assert await all_applied(app)
        users = shop_users(emu)
        assert len(users) == 20 == len(set(users))


async def test_drift_with_the_real_adapter_repairs_only_the_shops_users(
    database_url: str,
) -> None:
    """Through the Remnawave adapter: a matching panel reports no drift; an expiry
    changed on the panel is re-applied; a user without the shop's tag is left alone."""
    async with shop_env(database_url) as e:
        app, emu = e.shop.app, e.shop.emu
        await buy_many(e.shop, 3)
        await app.outbox.drain(max_rounds=10)
        assert app.panel is not None
        drift = CheckPanelDrift(app.deps, app.panel, TAG)
        clean = await drift()
        assert (clean.subscriptions, clean.enqueued, clean.orphans) == (3, 0, ())
        [first, *_] = sorted(u.id for u in emu.users_by_id.values())
        expiry = emu.user(first)["expireAt"]
        emu.set_expire_at(first, datetime.now(UTC) + timedelta(days=400))
        stranger = emu.add_user("not_ours", expire_at=datetime.now(UTC) + timedelta(days=1))
        report = await drift()
        assert (report.differing, report.enqueued, report.foreign) == (1, 1, 1)
        await app.outbox.drain(max_rounds=10)
        assert emu.user(first)["expireAt"] == expiry
        assert emu.user(stranger["id"])["username"] == "not_ours"
        assert (await drift()).enqueued == 0
