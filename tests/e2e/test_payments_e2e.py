"""End to end: checkout -> the provider emulator -> our webhook server over real TCP -> the
database (SQLite and PostgreSQL) -> the outbox -> the (fake) panel.

Gateways are built from configuration (``VPNSHOP_*`` values pointing at the emulators), so
these tests also prove the wiring in ``vpnshop.gateways``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest
import sqlalchemy as sa

from vpnshop.adapters.clock import SystemClock
from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import Settings, parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.payment import PaymentStatus
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.ports.payments import CheckoutRequest
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.fakes import FakePanel
from vpnshop.testing.freekassa import FreeKassaEmulator
from vpnshop.testing.providers import provider_env
from vpnshop.testing.tribute import TributeEmulator
from vpnshop.testing.yookassa import YooKassaEmulator
from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.metrics import WebhookMetrics
from vpnshop_webhooks.server import start_site

MONTH_DAYS = 30
MONTH_RUB = Money(19900, RUB)
TRIBUTE_CODE = "sMONTH"
FOREIGN_IP = "127.0.0.2"  # a loopback address outside the configured allowlists


@attrs.define
class Shop:
    app: App
    url: str
    panel: FakePanel
    metrics: WebhookMetrics
    yookassa: YooKassaEmulator
    cryptopay: CryptoPayEmulator
    freekassa: FreeKassaEmulator
    tribute: TributeEmulator

    def webhook(self, provider: str) -> str:
        return f"{self.url}/webhooks/{provider}"


def shop_settings(
    database_url: str,
    yk: YooKassaEmulator,
    cp: CryptoPayEmulator,
    fk: FreeKassaEmulator,
    tb: TributeEmulator,
) -> Settings:
    """Settings as an operator would write them, pointing every provider at its emulator."""
    env = {
        "VPNSHOP_DATABASE_URL": database_url,
        **provider_env(yk, cp, fk, tb, tribute_product=TRIBUTE_CODE),
    }
    return parse_settings(env)


@asynccontextmanager
async def running_shop(database_url: str) -> AsyncIterator[Shop]:
    """Emulators, the App built from settings, and the webhook server on 127.0.0.1:0."""
    async with (
        YooKassaEmulator() as yk,
        CryptoPayEmulator() as cp,
        FreeKassaEmulator() as fk,
        TributeEmulator() as tb,
    ):
        tb.add_product(TRIBUTE_CODE, price=MONTH_RUB.minor)
        clock = SystemClock()
        panel = FakePanel(clock)
        settings = shop_settings(database_url, yk, cp, fk, tb)
        async with bootstrap(settings, clock=clock, panel=panel) as app:
            await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
            metrics = WebhookMetrics()
            runner, url = await start_site(create_app(app, metrics=metrics), access_log=False)
            try:
                shop = Shop(app, url, panel, metrics, yk, cp, fk, tb)
                yk.webhook_url = shop.webhook("yookassa")
                cp.webhook_url = shop.webhook("cryptopay")
                fk.webhook_url = shop.webhook("freekassa")
                tb.webhook_url = shop.webhook("tribute")
                yield shop
            finally:
                await runner.cleanup()


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[Shop]:
    async with running_shop(database_url) as s:
        yield s


_telegram_ids = iter(range(700_000_001, 800_000_000))


async def new_customer(app: App) -> tuple[int, int]:
    telegram_id = next(_telegram_ids)
    customer, created = await app.register_customer(telegram_id, language_code="en")
    assert created
    assert customer.id is not None
    return customer.id, telegram_id


async def checkout(app: App, customer_id: int, provider: str, **kw: Any) -> tuple[str, str]:
    """Start a checkout; returns (our payment id, the provider's id)."""
    if "topup" not in kw:
        kw.setdefault("plan_code", "month")
    link = await app.start_checkout(customer_id, provider, **kw)
    async with app.deps.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
    assert payment is not None
    assert payment.status is PaymentStatus.PENDING
    assert payment.external_id is not None
    return payment.id, payment.external_id


async def payment_status(app: App, payment_id: str) -> PaymentStatus:
    async with app.deps.uow() as uow:
        payment = await uow.payments.get(payment_id)
    assert payment is not None
    return payment.status


async def snapshot(app: App) -> dict[str, Any]:
    """Everything money or access depends on: payments, ledger, balances, subscriptions."""
    queries = {
        "payments": "SELECT id, status, external_id FROM payments ORDER BY id",
        "ledger": "SELECT count(*) FROM ledger",
        "balances": "SELECT * FROM balances ORDER BY 1, 2",
        "subscriptions": "SELECT id, customer_id, expires_at FROM subscriptions ORDER BY id",
        "jobs": "SELECT kind, dedupe_key FROM outbox ORDER BY id",
    }
    async with app.engine.connect() as conn:
        return {
            name: [tuple(r) for r in (await conn.execute(sa.text(q))).all()]
            for name, q in queries.items()
        }


async def job_keys(app: App) -> dict[str, list[str]]:
    async with app.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT kind, dedupe_key FROM outbox"))).all()
    jobs: dict[str, list[str]] = {}
    for kind, key in rows:
        jobs.setdefault(kind, []).append(key)
    return jobs


async def assert_plan_paid(shop: Shop, customer_id: int, payment_id: str, before: datetime) -> None:
    """The payment succeeded, the subscription runs 30 days, the ledger is consistent, the
    jobs are queued, and the drained outbox made the panel user match the subscription."""
    app = shop.app
    assert await payment_status(app, payment_id) is PaymentStatus.SUCCEEDED
    async with app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(customer_id)
    assert len(subs) == 1
    sub = subs[0]
    after = SystemClock().now()
    assert before + timedelta(days=MONTH_DAYS) <= sub.expires_at
    assert sub.expires_at <= after + timedelta(days=MONTH_DAYS)
    assert await app.verify_ledger() == []
    jobs = await job_keys(app)
    assert f"notify:paid:{payment_id}" in jobs[JobKind.NOTIFY_CUSTOMER]
    assert jobs.get(JobKind.APPLY_SUBSCRIPTION)
    report = await app.outbox.drain(max_rounds=10)
    assert report.done >= 1
    async with app.deps.uow() as uow:
        linked = await uow.subscriptions.get(sub.id)
    assert linked is not None
    assert linked.panel_key is not None
    user = shop.panel.users[linked.panel_key]
    assert user.expires_at == sub.expires_at


# -- the happy paths --------------------------------------------------------------------


async def test_yookassa_payment_extends_subscription_and_reaches_panel(shop: Shop) -> None:
    """A YooKassa payment, notified from an allowed address, extends the plan once."""
    customer_id, _ = await new_customer(shop.app)
    before = SystemClock().now()
    payment_id, external_id = await checkout(shop.app, customer_id, "yookassa")
    await shop.yookassa.pay(external_id)
    delivery = shop.yookassa.deliveries[-1]
    assert delivery.status == 200
    await assert_plan_paid(shop, customer_id, payment_id, before)


async def test_cryptopay_payment_extends_subscription_and_reaches_panel(shop: Shop) -> None:
    """A signed Crypto Pay invoice_paid update extends the plan and is answered 200."""
    customer_id, _ = await new_customer(shop.app)
    before = SystemClock().now()
    payment_id, external_id = await checkout(shop.app, customer_id, "cryptopay")
    delivery = await shop.cryptopay.pay(external_id)
    assert delivery is not None
    assert delivery.status == 200
    await assert_plan_paid(shop, customer_id, payment_id, before)
    metrics = shop.metrics.render().decode()
    assert 'vpnshop_payments_confirmed_total{provider="cryptopay"} 1.0' in metrics
    assert (
        'vpnshop_payments_confirmed_amount_minor_total{currency="RUB",provider="cryptopay"} '
        "19900.0" in metrics
    )


async def test_freekassa_payment_extends_subscription_and_answers_yes(shop: Shop) -> None:
    """A FreeKassa notification with a valid MD5 SIGN extends the plan; the answer is YES."""
    customer_id, _ = await new_customer(shop.app)
    before = SystemClock().now()
    payment_id, _ = await checkout(shop.app, customer_id, "freekassa")
    delivery = await shop.freekassa.pay(payment_id)
    assert delivery is not None
    assert (delivery.status, delivery.response_text) == (200, "YES")
    await assert_plan_paid(shop, customer_id, payment_id, before)


async def test_cryptopay_topup_credits_balance_through_ledger(shop: Shop) -> None:
    """A top-up checkout, once paid, credits the balance with one TOPUP ledger entry."""
    app = shop.app
    customer_id, _ = await new_customer(app)
    amount = Money(50000, RUB)
    payment_id, external_id = await checkout(app, customer_id, "cryptopay", topup=amount)
    delivery = await shop.cryptopay.pay(external_id)
    assert delivery is not None
    assert delivery.status == 200
    assert await payment_status(app, payment_id) is PaymentStatus.SUCCEEDED
    async with app.deps.uow() as uow:
        balance = await uow.ledger.balance(customer_id, RUB)
        entries = await uow.ledger.entries(customer_id)
        subs = await uow.subscriptions.for_customer(customer_id)
    assert balance == amount
    assert [(e.kind, e.amount) for e in entries] == [(EntryKind.TOPUP, amount)]
    assert subs == []
    assert await app.verify_ledger() == []


async def test_tribute_new_subscription_extends_plan(shop: Shop) -> None:
    """A signed Tribute new_subscription for a mapped product extends the customer's plan."""
    customer_id, telegram_id = await new_customer(shop.app)
    delivery = await shop.tribute.subscribe(telegram_id, TRIBUTE_CODE)
    assert delivery.status == 200
    async with shop.app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(customer_id)
    assert len(subs) == 1
    assert subs[0].expires_at >= SystemClock().now() + timedelta(days=MONTH_DAYS - 1)
    assert await shop.app.verify_ledger() == []


# -- hostile inputs: each leaves money and access as they were ---------------------------


async def post(
    url: str, body: bytes, headers: Mapping[str, str], *, source_ip: str = "127.0.0.1"
) -> tuple[int, str]:
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=body, headers=dict(headers)) as resp,
    ):
        return resp.status, await resp.text()


@asynccontextmanager
async def unchanged(app: App) -> AsyncIterator[None]:
    before = await snapshot(app)
    yield
    assert await snapshot(app) == before
    assert await app.verify_ledger() == []


async def test_cryptopay_forged_or_missing_signature_is_refused(shop: Shop) -> None:
    """Another app's signature, or none, is answered 401 and credits nothing."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, external_id = await checkout(shop.app, customer_id, "cryptopay")
    shop.cryptopay.mark_paid(external_id)
    body, headers = shop.cryptopay.notification_body(external_id, token="9999:forged")
    unsigned = {k: v for k, v in headers.items() if k != "crypto-pay-api-signature"}
    async with unchanged(shop.app):
        assert (await post(shop.webhook("cryptopay"), body, headers))[0] == 401
        assert (await post(shop.webhook("cryptopay"), body, unsigned))[0] == 401
    assert await payment_status(shop.app, payment_id) is PaymentStatus.PENDING


async def test_tribute_forged_signature_is_refused(shop: Shop) -> None:
    """A Tribute webhook signed with another key is answered 401."""
    _, telegram_id = await new_customer(shop.app)
    payload = shop.tribute.subscription_payload(telegram_id, TRIBUTE_CODE)
    body, headers = shop.tribute.notification_body(
        "new_subscription", payload, api_key="not-our-key"
    )
    async with unchanged(shop.app):
        assert (await post(shop.webhook("tribute"), body, headers))[0] == 401


async def test_yookassa_from_foreign_address_is_refused(shop: Shop) -> None:
    """A YooKassa notification from outside the allowlist is 401, even for a paid payment."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, external_id = await checkout(shop.app, customer_id, "yookassa")
    await shop.yookassa.pay(external_id, notify=False)
    async with unchanged(shop.app):
        delivery = await shop.yookassa.notify(
            "payment.succeeded", external_id, source_ip=FOREIGN_IP
        )
        assert delivery.status in (401, 403)
    assert await payment_status(shop.app, payment_id) is PaymentStatus.PENDING


async def test_freekassa_from_foreign_address_is_refused(shop: Shop) -> None:
    """A genuinely signed FreeKassa notification from outside the allowlist is refused."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, _ = await checkout(shop.app, customer_id, "freekassa")
    async with unchanged(shop.app):
        delivery = await shop.freekassa.pay(payment_id, source_ip=FOREIGN_IP)
        assert delivery is not None
        assert delivery.status in (401, 403)
    assert await payment_status(shop.app, payment_id) is PaymentStatus.PENDING


async def test_yookassa_success_claim_for_pending_payment_credits_nothing(shop: Shop) -> None:
    """A body saying "succeeded" while the API says "pending" is answered 2xx and ignored."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, external_id = await checkout(shop.app, customer_id, "yookassa")
    body = shop.yookassa.notification_body(
        "payment.succeeded", external_id, object_overrides={"status": "succeeded", "paid": True}
    )
    async with unchanged(shop.app):
        delivery = await shop.yookassa.notify("payment.succeeded", external_id, body=body)
        assert delivery.status == 200
    assert await payment_status(shop.app, payment_id) is PaymentStatus.PENDING


async def test_amount_tampering_breaks_the_signature(shop: Shop) -> None:
    """A lowered amount after signing (Crypto Pay, FreeKassa) is refused as unauthenticated."""
    customer_id, _ = await new_customer(shop.app)
    cp_payment, cp_invoice = await checkout(shop.app, customer_id, "cryptopay")
    fk_payment, _ = await checkout(shop.app, customer_id, "freekassa")
    shop.cryptopay.mark_paid(cp_invoice)
    cp_body, cp_headers = shop.cryptopay.notification_body(cp_invoice, tamper={"amount": "1.00"})
    fk_body = shop.freekassa.notification_body(fk_payment, tamper={"AMOUNT": "1.00"})
    async with unchanged(shop.app):
        assert (await post(shop.webhook("cryptopay"), cp_body, cp_headers))[0] == 401
        status, _ = await post(
            shop.webhook("freekassa"),
            fk_body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 401
    assert await payment_status(shop.app, cp_payment) is PaymentStatus.PENDING
    assert await payment_status(shop.app, fk_payment) is PaymentStatus.PENDING


async def test_authentic_event_for_unknown_payment_changes_nothing(shop: Shop) -> None:
    """A well-signed notification for a payment we never stored is answered 2xx, no-op."""
    request = CheckoutRequest(
        payment_id="ghost-payment",
        order_id="ghost-order",
        amount=MONTH_RUB,
        description="not ours",
        idempotency_key="pay:ghost-payment",
        customer_telegram_id=1,
    )
    cp_ghost = await shop.app.gateways["cryptopay"].create_payment(request)
    await shop.app.gateways["freekassa"].create_payment(request)
    assert cp_ghost.external_id is not None
    async with unchanged(shop.app):
        cp = await shop.cryptopay.pay(cp_ghost.external_id)
        fk = await shop.freekassa.pay("ghost-payment")
        assert cp is not None
        assert cp.status == 200
        assert fk is not None
        assert (fk.status, fk.response_text) == (200, "YES")


async def test_replayed_event_changes_nothing(shop: Shop) -> None:
    """The same signed update delivered again after success is answered 200 and is a no-op."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, external_id = await checkout(shop.app, customer_id, "cryptopay")
    first = await shop.cryptopay.pay(external_id)
    assert first is not None
    assert first.status == 200
    async with unchanged(shop.app):
        again = await shop.cryptopay.deliver(first.body, first.headers)
        assert again.status == 200
    assert await payment_status(shop.app, payment_id) is PaymentStatus.SUCCEEDED


async def test_malformed_bodies_are_400(shop: Shop) -> None:
    """Signed garbage JSON (Crypto Pay) and a form repeating a field (FreeKassa) are 400."""
    garbage = b'{"update_type": "invoice_paid", '
    headers = {
        "Content-Type": "application/json",
        "crypto-pay-api-signature": shop.cryptopay.sign(garbage),
    }
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with unchanged(shop.app):
        assert (await post(shop.webhook("cryptopay"), garbage, headers))[0] == 400
        repeated = b"MERCHANT_ID=31337&MERCHANT_ID=31337&AMOUNT=199.00&SIGN=00"
        assert (await post(shop.webhook("freekassa"), repeated, form))[0] == 400


async def test_oversized_and_wrong_content_type_are_refused(shop: Shop) -> None:
    """A 100 KiB body is 413 and a form sent to a JSON provider (or JSON to FreeKassa) 415."""
    customer_id, _ = await new_customer(shop.app)
    _, external_id = await checkout(shop.app, customer_id, "cryptopay")
    shop.cryptopay.mark_paid(external_id)
    body, headers = shop.cryptopay.notification_body(external_id)
    huge = b'{"pad": "' + b"x" * (100 * 1024) + b'"}'
    huge_headers = {**headers, "crypto-pay-api-signature": shop.cryptopay.sign(huge)}
    async with unchanged(shop.app):
        assert (await post(shop.webhook("cryptopay"), huge, huge_headers))[0] == 413
        as_text = {**headers, "Content-Type": "text/plain"}
        assert (await post(shop.webhook("cryptopay"), body, as_text))[0] == 415
        fk_json = {"Content-Type": "application/json"}
        assert (await post(shop.webhook("freekassa"), b"{}", fk_json))[0] == 415


async def test_freekassa_wrong_merchant_id_is_refused(shop: Shop) -> None:
    """A notification correctly signed for another shop id is refused."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, _ = await checkout(shop.app, customer_id, "freekassa")
    body = shop.freekassa.notification_body(payment_id, overrides={"MERCHANT_ID": "99999"})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with unchanged(shop.app):
        assert (await post(shop.webhook("freekassa"), body, form))[0] in (401, 403)
    assert await payment_status(shop.app, payment_id) is PaymentStatus.PENDING


# -- duplicates: ten concurrent deliveries credit once ----------------------------------


async def _ten_times(url: str, body: bytes, headers: Mapping[str, str]) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(url, data=body, headers=dict(headers)) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one() for _ in range(10))))


async def assert_extended_once(shop: Shop, customer_id: int, payment_id: str) -> None:
    assert await payment_status(shop.app, payment_id) is PaymentStatus.SUCCEEDED
    async with shop.app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(customer_id)
    assert len(subs) == 1
    assert subs[0].expires_at <= SystemClock().now() + timedelta(days=MONTH_DAYS)
    jobs = await job_keys(shop.app)
    assert jobs[JobKind.NOTIFY_CUSTOMER].count(f"notify:paid:{payment_id}") == 1
    assert await shop.app.verify_ledger() == []


async def test_yookassa_ten_concurrent_deliveries_extend_once(shop: Shop) -> None:
    """Ten simultaneous payment.succeeded notifications extend the plan by 30 days once."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, external_id = await checkout(shop.app, customer_id, "yookassa")
    await shop.yookassa.pay(external_id, notify=False)
    body = shop.yookassa.notification_body("payment.succeeded", external_id)
    statuses = await _ten_times(
        shop.webhook("yookassa"), body, {"Content-Type": "application/json"}
    )
    assert statuses == [200] * 10
    await assert_extended_once(shop, customer_id, payment_id)


async def test_cryptopay_ten_concurrent_deliveries_extend_once(shop: Shop) -> None:
    """Ten simultaneous signed invoice_paid updates extend the plan by 30 days once."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, external_id = await checkout(shop.app, customer_id, "cryptopay")
    shop.cryptopay.mark_paid(external_id)
    body, headers = shop.cryptopay.notification_body(external_id)
    assert await _ten_times(shop.webhook("cryptopay"), body, headers) == [200] * 10
    await assert_extended_once(shop, customer_id, payment_id)
    metrics = shop.metrics.render().decode()
    assert 'vpnshop_webhooks_total{outcome="confirmed",provider="cryptopay"} 1.0' in metrics
    assert 'vpnshop_webhooks_total{outcome="duplicate",provider="cryptopay"} 9.0' in metrics


async def test_cryptopay_ten_concurrent_topups_credit_once(shop: Shop) -> None:
    """Ten simultaneous deliveries of a paid top-up credit the balance exactly once."""
    customer_id, _ = await new_customer(shop.app)
    amount = Money(30000, RUB)
    _, external_id = await checkout(shop.app, customer_id, "cryptopay", topup=amount)
    shop.cryptopay.mark_paid(external_id)
    body, headers = shop.cryptopay.notification_body(external_id)
    assert await _ten_times(shop.webhook("cryptopay"), body, headers) == [200] * 10
    async with shop.app.deps.uow() as uow:
        assert await uow.ledger.balance(customer_id, RUB) == amount
    assert await shop.app.verify_ledger() == []


async def test_freekassa_ten_concurrent_deliveries_extend_once(shop: Shop) -> None:
    """Ten simultaneous FreeKassa notifications extend once and are all answered YES."""
    customer_id, _ = await new_customer(shop.app)
    payment_id, _ = await checkout(shop.app, customer_id, "freekassa")
    shop.freekassa.order(payment_id).status = 1
    body = shop.freekassa.notification_body(payment_id)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert await _ten_times(shop.webhook("freekassa"), body, form) == [200] * 10
    await assert_extended_once(shop, customer_id, payment_id)


async def test_tribute_ten_concurrent_deliveries_extend_once(shop: Shop) -> None:
    """Ten simultaneous new_subscription webhooks extend the plan by one period once."""
    customer_id, telegram_id = await new_customer(shop.app)
    payload = shop.tribute.subscription_payload(telegram_id, TRIBUTE_CODE)
    body, headers = shop.tribute.notification_body("new_subscription", payload)
    assert await _ten_times(shop.webhook("tribute"), body, headers) == [200] * 10
    async with shop.app.deps.uow() as uow:
        subs = await uow.subscriptions.for_customer(customer_id)
    assert len(subs) == 1
    now = SystemClock().now()
    assert now + timedelta(days=MONTH_DAYS - 1) <= subs[0].expires_at
    assert subs[0].expires_at <= now + timedelta(days=MONTH_DAYS + 1)
