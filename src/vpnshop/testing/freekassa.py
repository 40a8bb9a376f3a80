"""A FreeKassa emulator: API v1 and the MD5-signed notification, real HTTP on 127.0.0.1.

API (JSON POSTs, each with ``shopId``, ``nonce`` and ``signature``):

* ``POST /v1/orders/create`` -> ``{"type":"success","orderId","orderHash","location"}``;
* ``POST /v1/orders`` (filters ``paymentId``, ``orderId``) -> ``{"type":"success",
  "pages":1,"orders":[{merchant_order_id, fk_order_id, amount, currency, status, ...}]}``.

Checks, like the real API: the shop id is known, ``signature`` is the HMAC-SHA256 (keyed
with the API key) of the values sorted by key joined with ``|`` (401 otherwise), and the
nonce is greater than every nonce accepted before for the shop (a repeated or lower
nonce -> 400 whose message mentions the nonce). Errors are ``{"type":"error","message"}``.
Assumption (UNVERIFIED at FreeKassa): a second ``orders/create`` with the same
``paymentId`` and amount returns the first order; with another amount it is refused.

A test acts as the payer: :meth:`FreeKassaEmulator.pay` marks the order paid and POSTs the
notification form (``MERCHANT_ID, AMOUNT, intid, MERCHANT_ORDER_ID, P_EMAIL, P_PHONE,
CUR_ID, SIGN, payer_account, commission, us_*``) with ``SIGN = md5(MERCHANT_ID:AMOUNT:
secret2:MERCHANT_ORDER_ID)`` from a loopback address of the test's choosing.
:meth:`FreeKassaEmulator.notification_body` gives the form bytes without sending them;
``overrides`` change fields before signing, ``tamper`` after (so the SIGN no longer fits).
``intid`` equals the API's ``orderId``.

Fault knobs: :meth:`FreeKassaEmulator.fail_next`, ``latency``, ``error_rate`` (seeded).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
from aiohttp import web

from vpnshop.testing._emulator import LoopbackServer, RouteFaultKnobs

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_AMOUNT = re.compile(r"^\d{1,10}(\.\d{1,2})?$")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"type": "error", "message": message}, status=status)


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@attrs.define
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class Delivery:
    """One notification POSTed to the webhook URL and what it answered."""

    order_id: int
    body: bytes
    source_ip: str
    status: int
    response_text: str


@attrs.define
class Order:
    order_id: int
    order_hash: str
    payment_id: str
    amount: Decimal
    amount_text: str  # as the shop sent it
    currency: str
    email: str
    ip: str
    method_id: int
    extra: dict[str, str]
    status: int = 0  # 0 new, 1 paid, 6 refunded, 8 error, 9 canceled
    created_at: str = ""


def _api_signature(params: dict[str, Any], api_key: str) -> str:
    text = "|".join(str(params[k]) for k in sorted(params) if k != "signature")
    return hmac.new(api_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class FreeKassaEmulator(LoopbackServer, RouteFaultKnobs):
    """FreeKassa over real HTTP. ``async with FreeKassaEmulator() as emu: emu.api_url``."""

    def __init__(
        self,
        *,
        shop_id: int = 31337,
        api_key: str = "test_emulator_api_key",
        secret_word_2: str = "test_emulator_secret_2",  # noqa: S107
        webhook_url: str | None = None,
        seed: int = 0,
    ) -> None:
        LoopbackServer.__init__(self)
        RouteFaultKnobs.__init__(self, seed)
        self.shop_id = shop_id
        self.api_key = api_key
        self.secret_word_2 = secret_word_2
        self.webhook_url = webhook_url
        self.orders: dict[int, Order] = {}
        self.requests: list[RecordedRequest] = []
        self.deliveries: list[Delivery] = []
        self.last_nonce: int = 0
        self._next_order = 170_000_000

    # -- lifetime: LoopbackServer --------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/orders/create", self._create)
        app.router.add_post("/v1/orders", self._list)
        app.router.add_get("/pay/{hash}", self._pay_page)
        return app

    @property
    def api_url(self) -> str:
        """What the gateway's ``api_url`` setting should be."""
        return self.base_url + "/v1"

    # -- fault knobs: fail_next, latency, error_rate (RouteFaultKnobs) --------------------
    def calls(self, route: str) -> list[RecordedRequest]:
        method, _, path = route.partition(" ")
        return [r for r in self.requests if r.method == method and r.path == path]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        rec = RecordedRequest(request.method, request.path, dict(request.headers), body)
        self.requests.append(rec)
        route = f"{request.method} {request.path}"
        response: web.StreamResponse
        status = await self._injected_status(route)
        if status is not None:
            response = _error(status, "Emulated failure")
        else:
            try:
                response = await handler(request)
            except _ApiError as exc:
                response = _error(exc.status, str(exc))
            after = self._take_fault(route, after=True)
            if after is not None:
                response = _error(after, "Emulated failure")
        rec.status = response.status
        return response

    # -- API -----------------------------------------------------------------------------
    async def _authenticated(self, request: web.Request) -> dict[str, Any]:
        try:
            params = json.loads(await request.read())
        except ValueError:
            raise _ApiError(400, "Invalid JSON") from None
        if not isinstance(params, dict):
            raise _ApiError(400, "Invalid JSON")
        if str(params.get("shopId")) != str(self.shop_id):
            raise _ApiError(401, "Shop not found")
        signature = params.get("signature")
        expected = _api_signature(params, self.api_key)
        if not isinstance(signature, str) or not hmac.compare_digest(
            signature.lower().encode(), expected.encode()
        ):
            raise _ApiError(401, "Wrong signature")
        nonce = params.get("nonce")
        if isinstance(nonce, bool) or not isinstance(nonce, int):
            raise _ApiError(400, "Nonce is required and must be an integer")
        if nonce <= self.last_nonce:
            raise _ApiError(400, f"Nonce {nonce} must be greater than {self.last_nonce}")
        self.last_nonce = nonce
        return params

    async def _create(self, request: web.Request) -> web.Response:
        params = await self._authenticated(request)
        for field in ("paymentId", "i", "email", "ip", "amount", "currency"):
            if params.get(field) in (None, ""):
                raise _ApiError(400, f"Field {field} is required")
        amount_text = str(params["amount"])
        if not _AMOUNT.match(amount_text):
            raise _ApiError(400, "Wrong amount")
        try:
            amount = Decimal(amount_text)
        except InvalidOperation:
            raise _ApiError(400, "Wrong amount") from None
        if amount <= 0:
            raise _ApiError(400, "Wrong amount")
        if params["currency"] != "RUB":
            raise _ApiError(400, "Wrong currency")
        payment_id = str(params["paymentId"])
        for existing in self.orders.values():
            if existing.payment_id == payment_id:
                if existing.amount != amount:
                    raise _ApiError(400, "Order with this paymentId exists with another amount")
                return self._created(existing)
        self._next_order += 1
        order = Order(
            order_id=self._next_order,
            order_hash=hashlib.sha256(f"{self._next_order}".encode()).hexdigest()[:32],
            payment_id=payment_id,
            amount=amount,
            amount_text=amount_text,
            currency="RUB",
            email=str(params["email"]),
            ip=str(params["ip"]),
            method_id=int(params["i"]),
            extra={k: str(v) for k, v in params.items() if k.startswith("us_")},
            created_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
        self.orders[order.order_id] = order
        return self._created(order)

    def _created(self, order: Order) -> web.Response:
        return web.json_response(
            {
                "type": "success",
                "orderId": order.order_id,
                "orderHash": order.order_hash,
                "location": f"{self.base_url}/pay/{order.order_hash}",
            }
        )

    async def _list(self, request: web.Request) -> web.Response:
        params = await self._authenticated(request)
        orders = list(self.orders.values())
        if params.get("paymentId") not in (None, ""):
            orders = [o for o in orders if o.payment_id == str(params["paymentId"])]
        if params.get("orderId") not in (None, ""):
            orders = [o for o in orders if str(o.order_id) == str(params["orderId"])]
        # The real API prints amounts as JSON numbers; a float prints its shortest exact
        # decimal form ("99.5"), which is what a client must parse without going via float.
        return web.json_response(
            {
                "type": "success",
                "pages": 1,
                "orders": [
                    {
                        "merchant_order_id": o.payment_id,
                        "fk_order_id": o.order_id,
                        "amount": float(o.amount),
                        "currency": o.currency,
                        "email": o.email,
                        "account": None,
                        "date": o.created_at,
                        "status": o.status,
                    }
                    for o in orders
                ],
            }
        )

    async def _pay_page(self, request: web.Request) -> web.Response:
        if not any(o.order_hash == request.match_info["hash"] for o in self.orders.values()):
            raise web.HTTPNotFound()
        return web.Response(text="FreeKassa emulator payment page", content_type="text/html")

    # -- acting as the payer / FreeKassa -------------------------------------------------
    def order(self, ref: int | str) -> Order:
        """An order by FreeKassa order id or by our payment id."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            found = self.orders.get(int(ref))
            if found is not None:
                return found
        for o in self.orders.values():
            if o.payment_id == str(ref):
                return o
        raise KeyError(f"the emulator has no order {ref!r}")

    def notification_fields(
        self,
        ref: int | str,
        *,
        amount_text: str | None = None,
        overrides: dict[str, str] | None = None,
        tamper: dict[str, str] | None = None,
        secret_word_2: str | None = None,
    ) -> list[tuple[str, str]]:
        """The notification form fields, in FreeKassa's order. *overrides* apply before
        signing (a genuine but unusual notification), *tamper* after (a forgery)."""
        o = self.order(ref)
        fields: dict[str, str] = {
            "MERCHANT_ID": str(self.shop_id),
            "AMOUNT": amount_text if amount_text is not None else o.amount_text,
            "intid": str(o.order_id),
            "MERCHANT_ORDER_ID": o.payment_id,
            "P_EMAIL": o.email,
            "P_PHONE": "",
            "CUR_ID": str(o.method_id),
            "payer_account": "",
            "commission": "0",
        }
        fields.update(o.extra)
        fields.update(overrides or {})
        secret = self.secret_word_2 if secret_word_2 is None else secret_word_2
        fields["SIGN"] = _md5(
            f"{fields['MERCHANT_ID']}:{fields['AMOUNT']}:{secret}:{fields['MERCHANT_ORDER_ID']}"
        )
        fields.update(tamper or {})
        return list(fields.items())

    def notification_body(self, ref: int | str, **kwargs: Any) -> bytes:
        """The form-encoded notification body (see :meth:`notification_fields`)."""
        return urlencode(self.notification_fields(ref, **kwargs)).encode("ascii")

    async def pay(
        self,
        ref: int | str,
        *,
        amount_text: str | None = None,
        notify: bool = True,
        source_ip: str = "127.0.0.1",
    ) -> Delivery | None:
        """The customer pays: the order is paid and the notification is delivered."""
        o = self.order(ref)
        o.status = 1
        if notify and self.webhook_url is not None:
            return await self.notify(o.order_id, amount_text=amount_text, source_ip=source_ip)
        return None

    def cancel(self, ref: int | str) -> None:
        """The order is canceled (FreeKassa sends no notification for that)."""
        self.order(ref).status = 9

    async def notify(
        self,
        ref: int | str,
        *,
        url: str | None = None,
        source_ip: str = "127.0.0.1",
        body: bytes | None = None,
        amount_text: str | None = None,
    ) -> Delivery:
        """POST the notification form to *url* (default: the webhook URL) from *source_ip*."""
        target = url or self.webhook_url
        if target is None:
            raise RuntimeError("no webhook URL to deliver to")
        o = self.order(ref)
        payload = (
            body
            if body is not None
            else self.notification_body(o.order_id, amount_text=amount_text)
        )
        connector = aiohttp.TCPConnector(local_addr=(source_ip, 0), force_close=True)
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=10)
            ) as session,
            session.post(
                target,
                data=payload,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as resp,
        ):
            delivery = Delivery(o.order_id, payload, source_ip, resp.status, await resp.text())
        self.deliveries.append(delivery)
        return delivery
