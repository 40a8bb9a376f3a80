"""A shop under attack: every webhook route served over real TCP, and deliveries signed
the way each provider signs them, for the hostile-input tests and the fuzz test.

Signatures are computed here from the providers' published schemes (HMAC-SHA256 of the
raw body for Crypto Pay, Tribute and the panel; MD5 of the FreeKassa fields), not by the
gateways under test.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import sqlalchemy as sa

from vpnshop.adapters.clock import SystemClock
from vpnshop.adapters.storage import tables
from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.fakes import FakePanel
from vpnshop.testing.freekassa import FreeKassaEmulator
from vpnshop.testing.yookassa import YooKassaEmulator
from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.panel import panel_routes
from vpnshop_webhooks.server import start_site

CRYPTOPAY_TOKEN = "1234:AAhostiletesttokenhostiletesttoken"
TRIBUTE_KEY = "tribute-hostile-test-key"
FREEKASSA_SHOP = "31337"
FREEKASSA_SECRET2 = "hostile-secret-two"
PANEL_SECRET = "HostileTestPanelSecret0123456789abcdef"
TRIBUTE_CODE = "sMONTH"
TIMEOUTS = {"header": 0.5, "body": 0.5, "keepalive": 1.5}  # seconds, short for the tests
CAPTURES = Path(__file__).parents[1] / "fixtures" / "remnawave-captures" / "webhooks_v3.3.2.jsonl"
ROUTES = ("cryptopay", "tribute", "freekassa", "yookassa", "remnawave")


@attrs.define
class HostileShop:
    app: App
    url: str
    yookassa: YooKassaEmulator

    def route(self, name: str) -> str:
        return f"{self.url}/webhooks/{name}"

    async def pending(self, provider: str, telegram_id: int) -> tuple[str, str]:
        """A new customer's pending payment for the month plan with *provider*: our id
        and the provider's."""
        customer, _ = await self.app.register_customer(telegram_id)
        assert customer.id is not None
        link = await self.app.start_checkout(customer.id, provider, plan_code="month")
        async with self.app.deps.uow() as uow:
            payment = await uow.payments.get(link.payment_id)
        assert payment is not None and payment.external_id is not None
        return link.payment_id, payment.external_id

    async def state(self) -> dict[str, Any]:
        """Row counts of every table and payments by status: what a request may change."""
        counts: dict[str, Any] = {}
        async with self.app.engine.connect() as conn:
            for table in tables.metadata.sorted_tables:
                counts[table.name] = (
                    await conn.execute(sa.select(sa.func.count()).select_from(table))
                ).scalar_one()
            rows = await conn.execute(
                sa.select(tables.payments.c.status, sa.func.count()).group_by(
                    tables.payments.c.status
                )
            )
            counts["payments_by_status"] = sorted((r[0], r[1]) for r in rows)
        return counts


@asynccontextmanager
async def hostile_shop(database_url: str) -> AsyncIterator[HostileShop]:
    """Every gateway and the panel route enabled, served by ``start_site`` with short
    time bounds (:data:`TIMEOUTS`)."""
    async with (
        YooKassaEmulator() as yk,
        CryptoPayEmulator(token=CRYPTOPAY_TOKEN) as cp,
        FreeKassaEmulator(shop_id=int(FREEKASSA_SHOP), secret_word_2=FREEKASSA_SECRET2) as fk,
    ):
        env = {
            "VPNSHOP_DATABASE_URL": database_url,
            "VPNSHOP_YOOKASSA_SHOP_ID": yk.shop_id,
            "VPNSHOP_YOOKASSA_SECRET_KEY": yk.secret_key,
            "VPNSHOP_YOOKASSA_API_URL": yk.api_url,
            "VPNSHOP_YOOKASSA_RETURN_URL": "https://t.me/vpnshop_bot",
            "VPNSHOP_YOOKASSA_ALLOWED_IPS": "127.0.0.1",
            "VPNSHOP_CRYPTOPAY_TOKEN": CRYPTOPAY_TOKEN,
            "VPNSHOP_CRYPTOPAY_API_URL": cp.base_url,
            "VPNSHOP_FREEKASSA_SHOP_ID": FREEKASSA_SHOP,
            "VPNSHOP_FREEKASSA_API_KEY": fk.api_key,
            "VPNSHOP_FREEKASSA_SECRET_WORD_2": FREEKASSA_SECRET2,
            "VPNSHOP_FREEKASSA_API_URL": fk.api_url,
            "VPNSHOP_FREEKASSA_ALLOWED_IPS": "127.0.0.1",
            "VPNSHOP_FREEKASSA_CUSTOMER_IP": "203.0.113.10",
            "VPNSHOP_TRIBUTE_API_KEY": TRIBUTE_KEY,
            "VPNSHOP_TRIBUTE_PRODUCTS": f"month=https://t.me/tribute/app?startapp={TRIBUTE_CODE}",
            "VPNSHOP_PANEL_URL": "http://127.0.0.1:1",
            "VPNSHOP_PANEL_TOKEN": "panel-token",
            "VPNSHOP_PANEL_WEBHOOK_SECRET": PANEL_SECRET,
        }
        clock = SystemClock()
        async with bootstrap(parse_settings(env), clock=clock, panel=FakePanel(clock)) as app:
            await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
            # Only the knobs this version of the server has, so that these tests also run
            # (and fail) against a server without time bounds.
            web_app = create_app(
                app,
                extra_routes=panel_routes(app),
                **_supported(create_app, body_timeout=TIMEOUTS["body"]),
            )
            runner, url = await start_site(
                web_app,
                access_log=False,
                shutdown_timeout=5.0,
                **_supported(
                    start_site,
                    header_timeout=TIMEOUTS["header"],
                    keepalive_timeout=TIMEOUTS["keepalive"],
                ),
            )
            try:
                yield HostileShop(app, url, yk)
            finally:
                await runner.cleanup()


def _supported(fn: Any, **kwargs: Any) -> dict[str, Any]:
    known = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in known}


# -- signing, as each provider documents it ----------------------------------------------


def hmac_hex(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def cryptopay_headers(body: bytes) -> dict[str, str]:
    key = hashlib.sha256(CRYPTOPAY_TOKEN.encode()).digest()
    return {"Content-Type": "application/json", "crypto-pay-api-signature": hmac_hex(key, body)}


def tribute_headers(body: bytes) -> dict[str, str]:
    signature = hmac_hex(TRIBUTE_KEY.encode(), body)
    return {"Content-Type": "application/json", "trbt-signature": signature}


def remnawave_headers(body: bytes) -> dict[str, str]:
    try:
        stamp = json.loads(body).get("timestamp")
    except (ValueError, AttributeError, RecursionError):
        stamp = None
    return {
        "Content-Type": "application/json",
        "X-Remnawave-Signature": hmac_hex(PANEL_SECRET.encode(), body),
        "X-Remnawave-Timestamp": stamp if isinstance(stamp, str) else _now_iso(),
    }


def freekassa_sign(fields: Mapping[str, str]) -> str:
    text = ":".join(
        [
            fields.get("MERCHANT_ID", ""),
            fields.get("AMOUNT", ""),
            FREEKASSA_SECRET2,
            fields.get("MERCHANT_ORDER_ID", ""),
        ]
    )
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def freekassa_body(fields: Mapping[str, str], *, sign: bool = True) -> bytes:
    signed = dict(fields)
    if sign:
        signed["SIGN"] = freekassa_sign(fields)
    return urlencode(signed).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sign_json(route: str, body: bytes) -> dict[str, str]:
    """Headers that make *body* authentic on a JSON *route* (YooKassa: the address is the
    only check before the API re-fetch, so no header signs anything)."""
    if route == "cryptopay":
        return cryptopay_headers(body)
    if route == "tribute":
        return tribute_headers(body)
    if route == "remnawave":
        return remnawave_headers(body)
    return {"Content-Type": "application/json"}


# -- valid documents ---------------------------------------------------------------------


def _now_iso(delta: timedelta = timedelta(0)) -> str:
    now = datetime.now(UTC) + delta
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def cryptopay_doc(
    payment_ref: str, amount: str = "199.00", invoice_id: int = 9001
) -> dict[str, Any]:
    return {
        "update_id": invoice_id,
        "update_type": "invoice_paid",
        "request_date": _now_iso(),
        "payload": {
            "invoice_id": invoice_id,
            "hash": "IVabc",
            "currency_type": "fiat",
            "fiat": "RUB",
            "amount": amount,
            "status": "paid",
            "paid_at": _now_iso(),
            "payload": payment_ref,
        },
    }


def tribute_doc(telegram_user_id: Any, amount: Any = 19900) -> dict[str, Any]:
    stamp = _now_iso()
    return {
        "name": "new_subscription",
        "created_at": stamp,
        "sent_at": stamp,
        "payload": {
            "subscription_name": "Month",
            "subscription_id": 1646,
            "period_id": 1,
            "period": "monthly",
            "price": 19900,
            "amount": amount,
            "currency": "rub",
            "user_id": 31326,
            "telegram_user_id": telegram_user_id,
            "channel_id": 1,
            "channel_name": "vpn",
            "expires_at": "2027-01-15T00:00:00.000Z",
            "web_app_link": f"https://t.me/tribute/app?startapp={TRIBUTE_CODE}",
            "type": "regular",
        },
    }


def yookassa_doc(object_id: str = "2ed5e0a8-000f-5000-9000-1d2f3c4b5a69") -> dict[str, Any]:
    return {
        "type": "notification",
        "event": "payment.succeeded",
        "object": {
            "id": object_id,
            "status": "succeeded",
            "paid": True,
            "amount": {"value": "199.00", "currency": "RUB"},
            "metadata": {"payment_id": "01HOSTILE"},
        },
    }


def freekassa_fields(
    order_id: str, amount: str = "199.00", intid: str = "777001"
) -> dict[str, str]:
    return {
        "MERCHANT_ID": FREEKASSA_SHOP,
        "AMOUNT": amount,
        "intid": intid,
        "MERCHANT_ORDER_ID": order_id,
        "P_EMAIL": "user@example.com",
        "CUR_ID": "44",
    }


def remnawave_docs() -> list[dict[str, Any]]:
    """Captured panel deliveries (a user event, a device event, an ignored one) restamped
    to now, so that they fall inside the verifier's window."""
    wanted = {"user.modified", "user_hwid_devices.added", "service.panel_started"}
    docs: dict[str, dict[str, Any]] = {}
    for line in CAPTURES.read_text().splitlines():
        body = json.loads(json.loads(line)["body"])
        if body["event"] in wanted and body["event"] not in docs:
            docs[body["event"]] = body
    stamped = []
    for doc in docs.values():
        doc["timestamp"] = _now_iso()
        stamped.append(doc)
    return stamped


def restamp(doc: dict[str, Any]) -> dict[str, Any]:
    """A panel document with a fresh timestamp (a new delivery, not a replay)."""
    return {**doc, "timestamp": _now_iso()}
