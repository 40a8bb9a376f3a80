"""A local Tribute (tribute.tg) for tests: product links plus signed webhooks.

Tribute is the calling side: a customer opens a creator's product link, pays inside
Tribute, and Tribute POSTs ``{"name","created_at","sent_at","payload"}`` to the creator's
webhook URL with ``trbt-signature`` = lowercase hex HMAC-SHA256(raw body, API key).

This emulator serves product links on ``http://127.0.0.1:<port>/app?startapp=<code>`` (an
unknown code answers 404), keeps subscriptions in memory, and lets a test act as the
Telegram user: :meth:`TributeEmulator.subscribe`, :meth:`renew`, :meth:`cancel` deliver
genuinely signed webhooks. :meth:`open_link` subscribes through a link as returned by
the gateway.

Answer semantics (docs): 200 means delivered; anything else (the docs show 400 for bad
data and 401 for a bad signature) is retried by Tribute with backoff over about 24 hours
(5 m, 15 m, 30 m, 1 h, 2 h, 4 h, 8 h, 8 h). :meth:`retry_failed` plays that schedule at
once: it redelivers, byte for byte, every delivery whose latest answer was not 200, at
most ``len(RETRY_SCHEDULE)`` times each.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import attrs
from aiohttp import web

from vpnshop.testing._emulator import LoopbackServer

RETRY_SCHEDULE: Final = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=8),
)
PERIODS: Final[Mapping[str, timedelta]] = {
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=30),
    "quarterly": timedelta(days=90),
    "halfyearly": timedelta(days=180),
    "yearly": timedelta(days=365),
}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attrs.frozen
class Product:
    """A creator's subscription product as Tribute knows it."""

    subscription_id: int
    code: str  # the ``startapp`` code of its web_app_link, e.g. ``sNMT``
    name: str
    price: int  # minor units
    currency: str  # lowercase, as Tribute sends it
    period: str
    period_id: int
    channel_id: int
    channel_name: str


@attrs.define
class Delivery:
    """One webhook body and the answers our server gave to each attempt."""

    body: bytes
    headers: dict[str, str]
    statuses: list[int] = attrs.Factory(list)  # 0 when the connection failed

    @property
    def status(self) -> int:
        return self.statuses[-1] if self.statuses else 0


@attrs.define
class Subscription:
    telegram_user_id: int
    product: Product
    expires_at: datetime
    cancelled: bool = False


class TributeEmulator(LoopbackServer):
    """In-memory Tribute. Use as ``async with TributeEmulator(...) as emu``."""

    def __init__(
        self,
        api_key: str = "trb-emulator-api-key",
        *,
        webhook_url: str | None = None,
        now: datetime | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.latency = 0.0  # seconds before each webhook POST
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.products: dict[str, Product] = {}
        self.subscriptions: dict[tuple[int, int], Subscription] = {}
        self.deliveries: list[Delivery] = []
        self.link_visits: list[str] = []
        self._ids = itertools.count(1646)

    # -- lifetime: LoopbackServer ---------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/app", self._handle_link)
        return app

    async def _handle_link(self, request: web.Request) -> web.Response:
        code = request.query.get("startapp", "")
        if code not in self.products:
            return web.Response(status=404, text="product not found")
        self.link_visits.append(str(request.rel_url))
        page = f"<html><body>{self.products[code].name}</body></html>"
        return web.Response(text=page, content_type="text/html")

    # -- the creator's catalogue ----------------------------------------------------------
    def add_product(
        self,
        code: str,
        *,
        name: str = "VPN Premium",
        price: int = 19900,
        currency: str = "rub",
        period: str = "monthly",
    ) -> Product:
        """Create a subscription product; its link is :meth:`link`."""
        if period not in PERIODS:
            raise ValueError(f"unknown period {period!r}")
        product = Product(
            subscription_id=next(self._ids),
            code=code,
            name=name,
            price=price,
            currency=currency,
            period=period,
            period_id=len(self.products) + 1,
            channel_id=-1001234567890,
            channel_name="VPN channel",
        )
        self.products[code] = product
        return product

    def link(self, code: str) -> str:
        """The product's link on this emulator (``web_app_link`` in webhooks is Telegram's)."""
        return f"{self.base_url}/app?startapp={code}"

    @staticmethod
    def web_app_link(code: str) -> str:
        return f"https://t.me/tribute/app?startapp={code}"

    # -- the Telegram user ----------------------------------------------------------------
    def _payload(self, sub: Subscription, amount: int | None) -> dict[str, Any]:
        p = sub.product
        return {
            "subscription_name": p.name,
            "subscription_id": p.subscription_id,
            "period_id": p.period_id,
            "period": p.period,
            "price": p.price,
            "amount": p.price if amount is None else amount,
            "currency": p.currency,
            "user_id": 31326 + sub.telegram_user_id % 1000,
            "telegram_user_id": sub.telegram_user_id,
            "channel_id": p.channel_id,
            "channel_name": p.channel_name,
            "expires_at": _iso(sub.expires_at),
            "web_app_link": self.web_app_link(p.code),
            "type": "regular",
        }

    def subscription_payload(
        self, telegram_user_id: int, code: str, *, amount: int | None = None
    ) -> dict[str, Any]:
        """The webhook payload of the user's subscription to *code* (created if absent,
        nothing delivered): feed it to :meth:`notification_body` for hand-made deliveries."""
        product = self.products[code]
        key = (telegram_user_id, product.subscription_id)
        if key not in self.subscriptions:
            expires = self.now + PERIODS[product.period]
            self.subscriptions[key] = Subscription(telegram_user_id, product, expires)
        return self._payload(self.subscriptions[key], amount)

    async def open_link(self, url: str, telegram_user_id: int) -> Delivery:
        """The user opens *url* (as the gateway returned it) and subscribes there."""
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            if resp.status != 200:
                raise ValueError(f"{url} answered {resp.status}")
        code = dict(parse_qsl(urlsplit(url).query)).get("startapp", "")
        return await self.subscribe(telegram_user_id, code)

    async def subscribe(
        self, telegram_user_id: int, code: str, *, amount: int | None = None
    ) -> Delivery:
        """The user pays for product *code*; ``new_subscription`` is delivered."""
        product = self.products[code]
        sub = Subscription(telegram_user_id, product, self.now + PERIODS[product.period])
        self.subscriptions[(telegram_user_id, product.subscription_id)] = sub
        return await self._send("new_subscription", self._payload(sub, amount))

    async def renew(self, telegram_user_id: int, code: str) -> Delivery:
        """Tribute charges the next period; ``renewed_subscription`` is delivered."""
        sub = self.subscriptions[(telegram_user_id, self.products[code].subscription_id)]
        if sub.cancelled:
            raise ValueError("a cancelled subscription does not renew")
        sub.expires_at += PERIODS[sub.product.period]
        return await self._send("renewed_subscription", self._payload(sub, None))

    async def cancel(
        self, telegram_user_id: int, code: str, *, reason: str = "user cancelled"
    ) -> Delivery:
        """The user cancels; ``cancelled_subscription`` is delivered."""
        sub = self.subscriptions[(telegram_user_id, self.products[code].subscription_id)]
        sub.cancelled = True
        payload = self._payload(sub, None) | {"cancel_reason": reason}
        return await self._send("cancelled_subscription", payload)

    async def donate(self, telegram_user_id: int, amount: int = 5000) -> Delivery:
        """A one-off donation (an event vpnshop must ignore)."""
        payload = {
            "donation_request_id": 77,
            "donation_name": "Tips",
            "message": "thanks",
            "period": "once",
            "amount": amount,
            "currency": "rub",
            "anonymously": False,
            "web_app_link": self.web_app_link("dTips"),
            "user_id": 31326,
            "telegram_user_id": telegram_user_id,
        }
        return await self._send("new_donation", payload)

    # -- wire -----------------------------------------------------------------------------
    def notification_body(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        api_key: str | None = None,
        tamper: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Raw bytes and headers of a webhook, not sent.

        *api_key* signs with another key (a forgery); *tamper* overrides payload fields
        AFTER signing, so the signature no longer matches the body.
        """
        stamp = _iso(self.now)
        envelope = {"name": name, "created_at": stamp, "sent_at": stamp, "payload": dict(payload)}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        sig = self.sign(body, api_key)
        if tamper:
            envelope["payload"] = dict(payload) | dict(tamper)
            body = json.dumps(envelope, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json", "trbt-signature": sig}

    def sign(self, body: bytes, api_key: str | None = None) -> str:
        return hmac.new((api_key or self.api_key).encode(), body, hashlib.sha256).hexdigest()

    async def _post(self, delivery: Delivery) -> None:
        if not self.webhook_url:
            raise RuntimeError("no webhook_url configured")
        if self.latency:
            await asyncio.sleep(self.latency)
        status = 0
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
                s.post(self.webhook_url, data=delivery.body, headers=delivery.headers) as resp,
            ):
                status = resp.status
        except aiohttp.ClientError:
            status = 0
        delivery.statuses.append(status)

    async def deliver(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """POST *body* to ``webhook_url`` once and record the answer."""
        delivery = Delivery(body=body, headers=dict(headers))
        self.deliveries.append(delivery)
        await self._post(delivery)
        return delivery

    async def _send(self, name: str, payload: Mapping[str, Any]) -> Delivery:
        return await self.deliver(*self.notification_body(name, payload))

    async def retry_failed(self) -> list[Delivery]:
        """Redeliver every delivery not yet answered 200 (bounded by the retry schedule)."""
        retried = []
        for delivery in self.deliveries:
            if delivery.status != 200 and len(delivery.statuses) <= len(RETRY_SCHEDULE):
                await self._post(delivery)
                retried.append(delivery)
        return retried
