"""End to end with the real Remnawave adapter: a payment through the Crypto Pay emulator
-> our webhook server -> the database (SQLite and PostgreSQL) -> the outbox -> the
RemnawaveEmulator over real HTTP; and the panel's signed webhooks back through the shell.

The panel is built by ``bootstrap`` from settings (``VPNSHOP_PANEL_*``), as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import sqlalchemy as sa

from vpnshop.adapters.remnawave.webhooks import parse_event, sign
from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobStatus
from vpnshop.domain.panel import PanelStatus
from vpnshop.domain.plan import GIB, Plan
from vpnshop.domain.subscription import Subscription
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.fakes import FakeClock
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.panel import PATH, panel_routes
from vpnshop_webhooks.server import start_site

SECRET = "s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3T"
PLAN_DAYS = 30
UNKNOWN_SQUAD = "00000000-0000-4000-8000-00000000dead"


@attrs.define
class PanelShop:
    app: App
    url: str
    clock: FakeClock
    emu: RemnawaveEmulator
    cryptopay: CryptoPayEmulator


@asynccontextmanager
async def panel_shop(
    database_url: str, version: str = "3.3.2", *, webhook_secret: str | None = SECRET
) -> AsyncIterator[PanelShop]:
    """The emulators, the App built from settings (real RemnawavePanel) and the server."""
    async with (
        RemnawaveEmulator(version, webhook_secret=SECRET, webhook_retry_delay=0.05) as emu,
        CryptoPayEmulator() as cp,
    ):
        env = {
            "VPNSHOP_DATABASE_URL": database_url,
            "VPNSHOP_CRYPTOPAY_TOKEN": cp.token,
            "VPNSHOP_CRYPTOPAY_API_URL": cp.base_url,
            "VPNSHOP_PANEL_URL": emu.base_url,
            "VPNSHOP_PANEL_TOKEN": emu.token,
            "VPNSHOP_PANEL_TAG": "SHOPTEST",
            "VPNSHOP_PANEL_USERNAME_TEMPLATE": "shop_{subscription_id}",
        }
        if webhook_secret:
            env["VPNSHOP_PANEL_WEBHOOK_SECRET"] = webhook_secret
        clock = FakeClock(datetime.now(UTC))
        async with bootstrap(parse_settings(env), clock=clock) as app:
            plans = [
                Plan(
                    code="month",
                    names={"en": "Month"},
                    duration_days=PLAN_DAYS,
                    prices={"RUB": Money(19900, RUB)},
                    traffic_limit_bytes=50 * GIB,
                    device_limit=3,
                    squads=(emu.default_squad_uuid,),
                ),
                Plan(
                    code="broken",
                    names={"en": "Broken"},
                    duration_days=PLAN_DAYS,
                    prices={"RUB": Money(9900, RUB)},
                    squads=(UNKNOWN_SQUAD,),
                ),
            ]
            await app.load_plans(plans, actor=Actor.system("test"))
            web_app = create_app(app, extra_routes=panel_routes(app))
            runner, url = await start_site(web_app, access_log=False)
            try:
                cp.webhook_url = f"{url}/webhooks/cryptopay"
                emu.webhook_url = f"{url}{PATH}"
                yield PanelShop(app, url, clock, emu, cp)
            finally:
                await runner.cleanup()


_telegram_ids = iter(range(810_000_001, 900_000_000))


async def buy(shop: PanelShop, plan_code: str = "month", customer_id: int | None = None) -> int:
    """A customer pays for *plan_code* through Crypto Pay; returns the customer id."""
    app = shop.app
    if customer_id is None:
        customer, _ = await app.register_customer(next(_telegram_ids), language_code="en")
        assert customer.id is not None
        customer_id = customer.id
    link = await app.start_checkout(customer_id, "cryptopay", plan_code=plan_code)
    async with app.deps.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
    assert payment is not None and payment.external_id is not None
    delivery = await shop.cryptopay.pay(payment.external_id)
    assert delivery is not None and delivery.status == 200
    return customer_id


async def subscription_of(app: App, customer_id: int) -> Subscription:
    async with app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(customer_id)
    assert len(subs) == 1
    return subs[0]


async def rows(app: App, query: str) -> list[tuple[Any, ...]]:
    async with app.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(sa.text(query))).all()]


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(params=["3.3.2", "2.7.4"])
async def shop(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[PanelShop]:
    async with panel_shop(database_url, request.param) as s:
        yield s


# -- fulfilment --------------------------------------------------------------------------


async def test_payment_creates_the_panel_user_and_a_second_extends_it(shop: PanelShop) -> None:
    """A paid plan becomes a tagged panel user with the plan's limits and squads; a second
    payment extends the same user."""
    app, emu = shop.app, shop.emu
    customer_id = await buy(shop)
    report = await app.outbox.drain(max_rounds=10)
    assert report.done >= 1 and report.parked == 0
    sub = await subscription_of(app, customer_id)
    assert sub.panel_key is not None and sub.subscription_url
    user = emu.user(sub.panel_key)
    async with app.deps.uow() as uow:
        customer = await uow.customers.get(customer_id)
    assert customer is not None
    assert parse_iso(user["expireAt"]) == sub.expires_at.replace(
        microsecond=sub.expires_at.microsecond // 1000 * 1000
    )
    assert user["username"] == f"shop_{sub.id}"
    assert user["trafficLimitBytes"] == 50 * GIB
    assert user["hwidDeviceLimit"] == 3
    assert [s["uuid"] for s in user["activeInternalSquads"]] == [emu.default_squad_uuid]
    assert user["tag"] == "SHOPTEST"
    assert user["telegramId"] == customer.telegram_id
    assert sub.subscription_url == user["subscriptionUrl"]

    await buy(shop, customer_id=customer_id)
    await app.outbox.drain(max_rounds=10)
    again = await subscription_of(app, customer_id)
    assert again.expires_at - sub.expires_at == timedelta(days=PLAN_DAYS)
    assert again.panel_key == sub.panel_key
    assert len(emu.users()) == 1
    assert parse_iso(emu.user(sub.panel_key)["expireAt"]).date() == again.expires_at.date()


async def test_panel_down_keeps_the_job_pending_until_it_is_back(database_url: str) -> None:
    """With the panel down the payment is still confirmed and the apply job waits with
    backoff; after the outage the next drain creates exactly one user."""
    async with panel_shop(database_url) as shop:
        app, emu = shop.app, shop.emu
        emu.down = True
        customer_id = await buy(shop)
        report = await app.outbox.drain(max_rounds=3)
        assert (report.done, report.parked) == (0, 0) and report.retried == 1
        [(status, attempts, error)] = await rows(
            app, "SELECT status, attempts, last_error FROM outbox WHERE kind = 'apply_subscription'"
        )
        assert status == JobStatus.PENDING and attempts == 1 and "Unavailable" in error
        assert emu.users() == []
        emu.down = False
        assert (await app.outbox.drain(max_rounds=3)).total == 0  # backoff not over yet
        shop.clock.advance(timedelta(minutes=5))
        assert (await app.outbox.drain(max_rounds=3)).done == 1
        sub = await subscription_of(app, customer_id)
        assert sub.panel_key is not None
        assert len(emu.users()) == 1
        assert await rows(app, "SELECT count(*) FROM payments WHERE status = 'succeeded'") == [(1,)]


async def test_unknown_squad_parks_the_job_with_its_reason(database_url: str) -> None:
    """A plan naming a squad the panel lacks is a permanent error: the job is parked."""
    async with panel_shop(database_url) as shop:
        await buy(shop, "broken")
        report = await shop.app.outbox.drain(max_rounds=3)
        assert report.parked == 1
        [(status, error)] = await rows(
            shop.app, "SELECT status, last_error FROM outbox WHERE kind = 'apply_subscription'"
        )
        assert status == JobStatus.PARKED
        assert "PanelInvalidError" in error and UNKNOWN_SQUAD in error


# -- the panel's webhooks ----------------------------------------------------------------


async def notify_templates(app: App) -> list[str]:
    """The templates of the queued customer notifications, but the payment's own."""
    found = await rows(app, "SELECT payload FROM outbox WHERE kind = 'notify_customer'")
    payloads = [json.loads(p) if isinstance(p, str) else p for (p,) in found]
    return sorted(p["template"] for p in payloads if p["template"] != "payment_received")


async def test_signed_webhooks_refresh_the_view_and_notify_once(shop: PanelShop) -> None:
    """Expiry, threshold, limit and device webhooks from the emulator update panel_users
    and enqueue each notification once, even when delivered twice."""
    app, emu = shop.app, shop.emu
    customer_id = await buy(shop)
    await app.outbox.drain(max_rounds=10)
    sub = await subscription_of(app, customer_id)
    assert sub.id is not None and sub.panel_key is not None
    await emu.flush_webhooks()  # user.created etc.
    async with app.deps.uow() as uow:  # the shop's time is nearly out, as the panel says
        await uow.subscriptions.update(
            attrs.evolve(sub, expires_at=shop.clock.now() + timedelta(hours=72))
        )
        await uow.commit()

    emu.notify_expiration(sub.panel_key, -72)
    emu.set_traffic_used(sub.panel_key, 41 * GIB)  # 82 %: threshold
    emu.set_traffic_used(sub.panel_key, 50 * GIB)  # limited
    emu.add_hwid_device(sub.panel_key, "hwid-e2e-1", platform="Android")
    await emu.flush_webhooks()
    assert all(w.status == 200 for w in emu.webhooks), [(w.event, w.status) for w in emu.webhooks]
    expected = sorted(["expiring", "traffic_threshold", "traffic_limited", "device_added"])
    assert await notify_templates(app) == expected

    async with app.deps.uow() as uow:
        view = await uow.panel_users.get(sub.id)
    assert view is not None
    assert view.panel_key == sub.panel_key
    assert view.status is PanelStatus.LIMITED
    assert view.used_traffic_bytes == 50 * GIB
    assert view.traffic_limit_bytes == 50 * GIB
    assert view.devices == 1

    async with aiohttp.ClientSession() as http:  # the same deliveries again
        for w in emu.webhooks:
            async with http.post(f"{shop.url}{PATH}", data=w.body, headers=w.headers) as resp:
                assert resp.status == 200
    assert await notify_templates(app) == expected
    async with app.deps.uow() as uow:
        assert await uow.panel_users.get(sub.id) == view


async def test_redelivery_to_another_process_enqueues_nothing_new(database_url: str) -> None:
    """The database dedupes too: handling the same parsed event again adds no job."""
    async with panel_shop(database_url) as shop:
        app, emu = shop.app, shop.emu
        customer_id = await buy(shop)
        await app.outbox.drain(max_rounds=10)
        sub = await subscription_of(app, customer_id)
        assert sub.panel_key is not None and app.handle_panel_event is not None
        emu.webhook_url = None
        emu.add_hwid_device(sub.panel_key, "hwid-x")
        sent = emu.webhooks[-1]
        signature = sent.headers["X-Remnawave-Signature"]
        event = parse_event(sent.payload, dedupe_key=f"remnawave:{signature}")
        first = await app.handle_panel_event(event)
        second = await app.handle_panel_event(event)
        assert first.notified == ("device_added",)
        assert second.notified == ()
        async with app.deps.uow() as uow:
            view = await uow.panel_users.get(sub.id or 0)
        assert view is not None and view.devices == 1


async def test_bad_signature_is_refused_and_changes_nothing(database_url: str) -> None:
    """A delivery whose signature does not match is answered 401 and not handled."""
    async with panel_shop(database_url) as shop:
        app, emu = shop.app, shop.emu
        customer_id = await buy(shop)
        await app.outbox.drain(max_rounds=10)
        sub = await subscription_of(app, customer_id)
        assert sub.panel_key is not None
        await emu.flush_webhooks()
        emu.webhook_url = None
        sent = emu.notify_expiration(sub.panel_key, -24)
        headers = dict(sent.headers)
        headers["X-Remnawave-Signature"] = sign("x" * 40, sent.body)
        before = await rows(app, "SELECT kind, dedupe_key FROM outbox ORDER BY id")
        view_before = await rows(app, "SELECT * FROM panel_users")
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{shop.url}{PATH}", data=sent.body, headers=headers) as resp,
        ):
            assert resp.status == 401
        assert await rows(app, "SELECT kind, dedupe_key FROM outbox ORDER BY id") == before
        assert await rows(app, "SELECT * FROM panel_users") == view_before


async def test_without_a_secret_the_route_is_off(database_url: str) -> None:
    """No VPNSHOP_PANEL_WEBHOOK_SECRET: /webhooks/remnawave answers 404, never unverified."""
    async with panel_shop(database_url, webhook_secret=None) as shop:
        emu = shop.emu
        emu.webhook_url = None
        user = emu.add_user("shop_1", tag="SHOPTEST")
        sent = emu.notify_expiration(str(user["id"]), -24)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{shop.url}{PATH}", data=sent.body, headers=sent.headers) as resp,
        ):
            assert resp.status == 404
        assert await rows(shop.app, "SELECT count(*) FROM outbox") == [(0,)]


async def test_event_for_a_user_the_shop_does_not_own_is_accepted_and_ignored(
    database_url: str,
) -> None:
    """A panel user without a shop subscription: 200, and nothing is stored or enqueued."""
    async with panel_shop(database_url) as shop:
        emu = shop.emu
        user = emu.add_user("someone_else", telegram_id=42)
        emu.connect(str(user["id"]))  # user.first_connected
        emu.notify_expiration(str(user["id"]), -24)
        await emu.flush_webhooks()
        assert [w.status for w in emu.webhooks] == [200, 200]
        assert await rows(shop.app, "SELECT count(*) FROM outbox") == [(0,)]
        assert await rows(shop.app, "SELECT count(*) FROM panel_users") == [(0,)]


# -- vpnshop panel check ------------------------------------------------------------------


def _cli(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "vpnshop.cli", "panel", "check"],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_panel_check_reports_version_scopes_and_squads(tmp_path: Path) -> None:
    """`vpnshop panel check` names the version, the token's reads and the squads; a
    token the panel refuses exits 1 with a clear message."""
    async with RemnawaveEmulator("3.3.2") as emu:
        premium = emu.add_squad("Premium")
        emu.add_token("scoped-token", ["users:list", "users:by-id", "internal-squads:list"])
        env = {"VPNSHOP_PANEL_URL": emu.base_url, "VPNSHOP_PANEL_TOKEN": emu.token}
        done = await asyncio.to_thread(_cli, env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "3.3.2" in done.stdout and "API line  3" in done.stdout
        assert "Default-Squad" in done.stdout
        assert premium in done.stdout and "Premium" in done.stdout

        scoped = await asyncio.to_thread(
            _cli, {**env, "VPNSHOP_PANEL_TOKEN": "scoped-token"}, tmp_path
        )
        assert scoped.returncode == 0, scoped.stdout + scoped.stderr
        assert "forbidden" in scoped.stdout and "Premium" in scoped.stdout

        bad = await asyncio.to_thread(_cli, {**env, "VPNSHOP_PANEL_TOKEN": "wrong"}, tmp_path)
        assert bad.returncode == 1
        assert "REFUSED" in bad.stdout


async def test_panel_check_without_a_panel_says_so(tmp_path: Path) -> None:
    """Without VPNSHOP_PANEL_URL the command explains what to set and exits 1."""
    done = await asyncio.to_thread(_cli, {}, tmp_path)
    assert done.returncode == 1
    assert "not configured" in done.stdout
