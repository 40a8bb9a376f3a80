"""The webhook shell on its own: routes, status mapping, limits, proxies, probes, metrics,
configuration of gateways, and the server's start and graceful stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestClient

from vpnshop.adapters.payments.netcheck import IpAllowlist
from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import ConfigError, Settings, parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.gateways import build_gateways
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.ports.payments import PaymentEvent, ProviderUnavailableError, WebhookRequest
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.testing.fakes import FakeGateway, FakePanel
from vpnshop_webhooks.app import create_app, resolve_remote_ip
from vpnshop_webhooks.metrics import WebhookMetrics
from vpnshop_webhooks.server import serve

DEAD_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"  # nothing listens on port 1


class RecordingGateway(FakeGateway):
    """A FakeGateway that remembers requests and can be told to fail while parsing."""

    def __init__(self) -> None:
        super().__init__("fake")
        self.seen: list[WebhookRequest] = []
        self.fail_with: Exception | None = None

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        self.seen.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return await super().parse_webhook(request)


@attrs.define
class Rig:
    app: App
    gateway: RecordingGateway
    panel: FakePanel


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    gateway, panel = RecordingGateway(), FakePanel()
    settings = Settings(database_url=database_url)
    async with bootstrap(settings, gateways={"fake": gateway}, panel=panel) as app:
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
        yield Rig(app, gateway, panel)


async def pending_payment(rig: Rig) -> str:
    customer, _ = await rig.app.register_customer(555_000_001)
    assert customer.id is not None
    link = await rig.app.start_checkout(customer.id, "fake", plan_code="month")
    return link.payment_id


def body_of(gateway: FakeGateway, event: PaymentEvent) -> tuple[bytes, dict[str, str]]:
    request = gateway.webhook_request(event)
    return request.body, {**request.headers, "Content-Type": "application/json"}


async def test_healthz_and_readyz_answer_when_everything_is_up(rig: Rig, aiohttp_client) -> None:
    """/healthz is "ok"; /readyz checks the database and the panel and says both are ok."""
    client: TestClient = await aiohttp_client(create_app(rig.app))
    resp = await client.get("/healthz")
    assert (resp.status, await resp.text()) == (200, "ok")
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"database": "ok", "panel": "ok"}


async def test_readyz_names_the_failing_check(rig: Rig, aiohttp_client) -> None:
    """A down panel, then a dead database, make /readyz 503 naming the failed check."""
    client: TestClient = await aiohttp_client(create_app(rig.app))
    rig.panel.down = True
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["failed"] == ["panel"]
    dead = create_engine(DEAD_DATABASE)
    try:
        dead_app = attrs.evolve(rig.app, engine=dead, panel=None)
        client2: TestClient = await aiohttp_client(create_app(dead_app))
        resp = await client2.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["failed"] == ["database"]
    finally:
        await dead.dispose()


async def test_confirmed_webhook_answers_reply_and_counts(rig: Rig, aiohttp_client) -> None:
    """A signed event confirms the payment, gets the gateway's reply and shows in /metrics."""
    metrics = WebhookMetrics()
    client: TestClient = await aiohttp_client(create_app(rig.app, metrics=metrics))
    payment_id = await pending_payment(rig)
    body, headers = body_of(rig.gateway, rig.gateway.event(payment_ref=payment_id))
    resp = await client.post("/webhooks/fake", data=body, headers=headers)
    assert (resp.status, await resp.text()) == (200, "OK")
    async with rig.app.deps.uow() as uow:
        payment = await uow.payments.get(payment_id)
    assert payment is not None
    assert payment.status is PaymentStatus.SUCCEEDED
    text = await (await client.get("/metrics")).text()
    assert 'vpnshop_webhooks_total{outcome="confirmed",provider="fake"} 1.0' in text
    assert 'vpnshop_payments_confirmed_amount_minor_total{currency="RUB",provider="fake"}' in text
    assert "vpnshop_outbox_pending_jobs 2.0" in text  # notify customer + apply subscription
    assert 'vpnshop_webhook_duration_seconds_count{provider="fake"} 1.0' in text
    assert "vpnshop_settle_batches_total 1.0" in text  # the store's group commit
    assert "vpnshop_settle_confirmations_total 1.0" in text
    assert "vpnshop_settle_batches_retried_total 0.0" in text


async def test_status_mapping_of_refusals(rig: Rig, aiohttp_client) -> None:
    """Unknown provider 404, bad signature 401, garbage 400, provider down 503."""
    client: TestClient = await aiohttp_client(create_app(rig.app))
    json_headers = {"Content-Type": "application/json"}
    assert (await client.post("/webhooks/nope", data=b"{}", headers=json_headers)).status == 404
    forged = {**json_headers, "X-Fake-Signature": "00"}
    assert (await client.post("/webhooks/fake", data=b"{}", headers=forged)).status == 401
    signed = {**json_headers, "X-Fake-Signature": rig.gateway.sign(b"[1")}
    assert (await client.post("/webhooks/fake", data=b"[1", headers=signed)).status == 400
    rig.gateway.fail_with = ProviderUnavailableError("api down")
    assert (await client.post("/webhooks/fake", data=b"{}", headers=forged)).status == 503


async def test_unexpected_error_is_500_without_traceback(
    rig: Rig, aiohttp_client, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a gateway answers a bare 500 while the log gets the traceback."""
    client: TestClient = await aiohttp_client(create_app(rig.app))
    rig.gateway.fail_with = RuntimeError("boom at line 42")
    with caplog.at_level(logging.ERROR):
        resp = await client.post(
            "/webhooks/fake", data=b"{}", headers={"Content-Type": "application/json"}
        )
    text = await resp.text()
    assert resp.status == 500
    assert "boom" not in text
    assert "Traceback" not in text
    assert any(r.exc_info and "boom at line 42" in str(r.exc_info[1]) for r in caplog.records)


async def test_amount_mismatch_is_acknowledged_but_not_credited(
    rig: Rig, aiohttp_client, caplog: pytest.LogCaptureFixture
) -> None:
    """An authentic event with the wrong amount is answered 2xx, logged at ERROR, not paid."""
    client: TestClient = await aiohttp_client(create_app(rig.app))
    payment_id = await pending_payment(rig)
    event = rig.gateway.event(payment_ref=payment_id, amount=Money(100, RUB))
    body, headers = body_of(rig.gateway, event)
    with caplog.at_level(logging.ERROR):
        resp = await client.post("/webhooks/fake", data=body, headers=headers)
    assert resp.status == 200
    assert any("amount mismatch" in r.getMessage() for r in caplog.records)
    async with rig.app.deps.uow() as uow:
        payment = await uow.payments.get(payment_id)
    assert payment is not None
    assert payment.status is PaymentStatus.PENDING


async def test_database_down_is_503(rig: Rig, aiohttp_client) -> None:
    """When the database cannot be reached, an authentic event is answered 503 (retry)."""
    dead = create_engine(DEAD_DATABASE)
    try:
        deps = attrs.evolve(rig.app.deps, uow=lambda: SqlAlchemyUnitOfWork(dead))
        dead_app = attrs.evolve(rig.app, confirm_payment=ConfirmPayment(deps))
        client: TestClient = await aiohttp_client(create_app(dead_app))
        event = rig.gateway.event(payment_ref="p1", external_id="x1", amount=Money(100, RUB))
        body, headers = body_of(rig.gateway, event)
        resp = await client.post("/webhooks/fake", data=body, headers=headers)
        assert resp.status == 503
    finally:
        await dead.dispose()


async def test_body_limit_and_content_type(rig: Rig, aiohttp_client) -> None:
    """Over-limit bodies are 413 (declared or streamed) and never parsed; wrong types 415."""
    client: TestClient = await aiohttp_client(create_app(rig.app, max_body=1024))
    json_headers = {"Content-Type": "application/json"}
    resp = await client.post("/webhooks/fake", data=b"x" * 2048, headers=json_headers)
    assert resp.status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"y" * 512

    resp = await client.post("/webhooks/fake", data=chunks(), headers=json_headers)
    assert resp.status == 413
    resp = await client.post("/webhooks/fake", data=b"a=1", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert rig.gateway.seen == []


def test_remote_ip_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    """X-Forwarded-For counts only behind a trusted peer, read from the right."""
    trusted = IpAllowlist(["127.0.0.0/8", "10.0.0.0/8"])
    assert resolve_remote_ip("203.0.113.9", ["1.2.3.4"], trusted) == "203.0.113.9"
    assert resolve_remote_ip("127.0.0.1", [], trusted) == "127.0.0.1"
    assert resolve_remote_ip("127.0.0.1", ["6.6.6.6, 1.2.3.4, 10.0.0.5"], trusted) == "1.2.3.4"
    assert resolve_remote_ip("127.0.0.1", ["6.6.6.6", "1.2.3.4"], trusted) == "1.2.3.4"
    assert resolve_remote_ip("127.0.0.1", ["10.1.1.1"], trusted) == "10.1.1.1"


async def test_remote_ip_reaches_gateway_through_trusted_proxy(rig: Rig, aiohttp_client) -> None:
    """Behind a trusted loopback proxy the gateway sees the forwarded client address."""
    headers = {"Content-Type": "application/json", "X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
    plain: TestClient = await aiohttp_client(create_app(rig.app))
    await plain.post("/webhooks/fake", data=b"{}", headers=headers)
    proxied: TestClient = await aiohttp_client(
        create_app(rig.app, trusted_proxies=["127.0.0.1/32"])
    )
    await proxied.post("/webhooks/fake", data=b"{}", headers=headers)
    assert [r.remote_ip for r in rig.gateway.seen] == ["127.0.0.1", "198.51.100.7"]


async def test_extra_routes_hook_wins_over_provider_route(rig: Rig, aiohttp_client) -> None:
    """A route passed as extra_routes (the panel's, later) is served instead of a provider."""
    from aiohttp import web

    async def panel_hook(request: web.Request) -> web.Response:
        return web.Response(text="panel")

    web_app = create_app(rig.app, extra_routes=[web.post("/webhooks/remnawave", panel_hook)])
    client: TestClient = await aiohttp_client(web_app)
    resp = await client.post("/webhooks/remnawave", data=b"{}")
    assert (resp.status, await resp.text()) == (200, "panel")


# -- gateways from configuration --------------------------------------------------------


def test_build_gateways_builds_configured_and_skips_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only configured providers are built, without a log line for each one that is off
    (``vpnshop check`` is where that is said)."""
    settings = parse_settings({"VPNSHOP_CRYPTOPAY_TOKEN": "1:abc", "VPNSHOP_CRYPTOPAY_FIAT": "usd"})
    with caplog.at_level(logging.INFO, logger="vpnshop.gateways"):
        gateways = build_gateways(settings, AsyncExitStack())
    assert list(gateways) == ["cryptopay"]
    assert gateways["cryptopay"].currency.code == "USD"
    assert "yookassa" not in caplog.text


def test_build_gateways_names_every_bad_variable() -> None:
    """Bad values are reported together when the settings load, each with its VPNSHOP_
    variable, no secrets."""
    with pytest.raises(ConfigError) as info:
        parse_settings(
            {
                "VPNSHOP_CRYPTOPAY_TOKEN": "1:abc",
                "VPNSHOP_CRYPTOPAY_NETWORK": "moon",
                "VPNSHOP_YOOKASSA_SHOP_ID": "1",
                "VPNSHOP_YOOKASSA_SECRET_KEY": "very-secret-key",
                "VPNSHOP_YOOKASSA_ALLOWED_IPS": "185.71.76.5/27",
                "VPNSHOP_TRIBUTE_API_KEY": "k",
                "VPNSHOP_TRIBUTE_PRODUCTS": "month",
                "VPNSHOP_FREEKASSA_SHOP_ID": "1",
                "VPNSHOP_FREEKASSA_API_KEY": "k",
                "VPNSHOP_FREEKASSA_SECRET_WORD_2": "s",
                "VPNSHOP_FREEKASSA_CUSTOMER_IP": "not-an-ip",
            }
        )
    names = {name for name, _ in info.value.problems}
    assert names == {
        "VPNSHOP_CRYPTOPAY_NETWORK",
        "VPNSHOP_YOOKASSA_ALLOWED_IPS",
        "VPNSHOP_TRIBUTE_PRODUCTS",
        "VPNSHOP_FREEKASSA_CUSTOMER_IP",
    }
    assert "very-secret-key" not in str(info.value)


def test_build_gateways_parses_tribute_products_and_freekassa() -> None:
    """plan=link pairs become Tribute products; FreeKassa builds with its payer address."""
    settings = parse_settings(
        {
            "VPNSHOP_TRIBUTE_API_KEY": "k",
            "VPNSHOP_TRIBUTE_PRODUCTS": "month=https://t.me/tribute/app?startapp=sA,"
            "year=https://t.me/tribute/app?startapp=sB",
            "VPNSHOP_FREEKASSA_SHOP_ID": "1",
            "VPNSHOP_FREEKASSA_API_KEY": "k",
            "VPNSHOP_FREEKASSA_SECRET_WORD_2": "s",
            "VPNSHOP_FREEKASSA_CUSTOMER_IP": "203.0.113.10",
        }
    )
    gateways = build_gateways(settings, AsyncExitStack())
    tribute = gateways["tribute"]
    assert tribute.link_for("year", 1) == "https://t.me/tribute/app?startapp=sB"  # type: ignore[attr-defined]
    assert gateways["freekassa"].webhook_reply.body == "YES"


# -- the server process -----------------------------------------------------------------


async def test_serve_starts_answers_and_stops_gracefully(tmp_path) -> None:
    """serve() listens, answers /healthz, finishes an in-flight request, and returns."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/serve.db", webhooks_port=0)
    stop = asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(serve(settings, stop=stop, ready=urls.append))
    for _ in range(200):
        if urls or task.done():
            break
        await asyncio.sleep(0.05)
    assert urls, "the server did not start"
    async with aiohttp.ClientSession() as session:
        async with session.get(urls[0] + "/healthz") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
        in_flight = asyncio.create_task(session.get(urls[0] + "/readyz"))
        await asyncio.sleep(0)
        stop.set()
        async with await in_flight as resp:
            assert resp.status == 200
    await asyncio.wait_for(task, timeout=30)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(urls[0] + "/healthz"):
            pass
