"""A YooKassa API v3 emulator: real HTTP on 127.0.0.1, state in memory.

It serves what :mod:`vpnshop.adapters.payments.yookassa` uses, in YooKassa's wire format:

* ``POST /v3/payments`` (redirect confirmation, or ``payment_method_id`` for a charge of a
  saved method, which succeeds at once), ``GET /v3/payments/{id}``;
* ``POST /v3/refunds``, ``GET /v3/refunds/{id}``.

Like YooKassa it checks HTTP Basic auth (``shopId:secret``; 401 ``invalid_credentials``
otherwise) and requires an ``Idempotence-Key`` on every POST (400 ``invalid_request``
without one, or with one longer than 64 characters). Idempotency, as emulated (YooKassa's
docs describe the retry rule, not every corner, so this is "docs-ish"):

* same key + same request (same method, path and JSON body) -> the stored response of the
  first request, so a retried create returns the same payment;
* same key + a different request -> 400 ``invalid_request`` with ``parameter``
  ``Idempotence-Key``: a key names one operation;
* 4xx answers are not stored (fixing the request and retrying is allowed).

A test acts as the payer or as YooKassa itself: :meth:`YooKassaEmulator.pay`, ``cancel``,
``expire``, ``complete_refund``; and :meth:`YooKassaEmulator.notify` POSTs the unsigned
JSON notification ``{"type":"notification","event":...,"object":{...}}`` to the webhook
URL, from a loopback source address of the test's choosing (``127.0.0.2`` is outside an
allowlist of ``127.0.0.1``). :meth:`YooKassaEmulator.notification_body` returns the bytes
without sending them, with optional overrides for forged/tampered notifications.

Fault knobs: :meth:`YooKassaEmulator.fail_next` (the next N calls, optionally of one route,
answer a status; ``after_processing=True`` does the work first and then answers the
error, which is how a lost response looks), ``latency`` (seconds per call) and
``error_rate`` (a seeded share of calls answering 500).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from vpnshop.testing._emulator import LoopbackServer, RouteFaultKnobs

_AMOUNT = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_KEY_MAX = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(code: str, description: str, parameter: str | None = None) -> dict[str, Any]:
    """An error in YooKassa's shape."""
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code,
        "description": description,
    }
    if parameter is not None:
        body["parameter"] = parameter
    return body


class _ApiError(Exception):
    def __init__(self, status: int, code: str, description: str, parameter: str | None = None):
        super().__init__(description)
        self.status = status
        self.body = error_body(code, description, parameter)


_STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
    500: "internal_server_error",
}


def _error_response(status: int, description: str = "Emulated failure") -> web.Response:
    code = _STATUS_CODES.get(status, "internal_server_error")
    return web.json_response(error_body(code, description), status=status)


@attrs.define
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


@attrs.define
class Delivery:
    """One notification POSTed to the webhook URL and what it answered."""

    event: str
    object_id: str
    body: bytes
    source_ip: str
    status: int
    response_text: str


def _money_value(raw: object, parameter: str) -> Decimal:
    if not isinstance(raw, str) or not _AMOUNT.match(raw):
        raise _ApiError(400, "invalid_request", "Invalid amount value", parameter)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _ApiError(400, "invalid_request", "Invalid amount value", parameter) from None
    if value <= 0:
        raise _ApiError(400, "invalid_request", "Amount must be positive", parameter)
    return value


def _fmt(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


class YooKassaEmulator(LoopbackServer, RouteFaultKnobs):
    """YooKassa over real HTTP. ``async with YooKassaEmulator() as emu: emu.api_url``."""

    def __init__(
        self,
        *,
        shop_id: str = "100500",
        secret_key: str = "test_emulator_secret",  # noqa: S107 - a test double's secret
        webhook_url: str | None = None,
        currencies: tuple[str, ...] = ("RUB",),
        receipts_required: bool = False,
        refund_status: str = "succeeded",
        seed: int = 0,
    ) -> None:
        LoopbackServer.__init__(self)
        RouteFaultKnobs.__init__(self, seed)
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.webhook_url = webhook_url
        self.currencies = currencies
        self.receipts_required = receipts_required
        self.refund_status = refund_status
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.saved_methods: dict[str, str] = {}  # method id -> payment id it was saved by
        # Saved methods whose charges YooKassa cancels, with the reason it gives
        # ("permission_revoked", "insufficient_funds", ...).
        self.declined_methods: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.deliveries: list[Delivery] = []
        self._idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}

    # -- lifetime: LoopbackServer --------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v3/payments", self._create_payment)
        app.router.add_get("/v3/payments/{id}", self._get_payment)
        app.router.add_post("/v3/refunds", self._create_refund)
        app.router.add_get("/v3/refunds/{id}", self._get_refund)
        app.router.add_get("/checkout/{id}", self._checkout_page)
        return app

    @property
    def api_url(self) -> str:
        """What the gateway's ``api_url`` setting should be."""
        return self.base_url + "/v3"

    # -- fault knobs: fail_next, latency, error_rate (RouteFaultKnobs) --------------------
    def calls(self, route: str) -> list[RecordedRequest]:
        """Recorded calls of *route* (``"POST /v3/payments"``; ids match ``{id}``)."""
        method, _, pattern = route.partition(" ")
        rx = re.compile("^" + re.escape(pattern).replace(r"\{id\}", "[^/]+") + "$")
        return [r for r in self.requests if r.method == method and rx.match(r.path)]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        rec = RecordedRequest(request.method, request.path, dict(request.headers), body)
        self.requests.append(rec)
        route = f"{request.method} {self._route_of(request)}"
        response: web.StreamResponse
        status = await self._injected_status(route)
        if status is not None:
            response = _error_response(status)
        elif request.path.startswith("/v3/") and not self._authorized(request):
            response = web.json_response(
                error_body(
                    "invalid_credentials",
                    "Authentication by given credentials failed",
                    "Authorization",
                ),
                status=401,
            )
        else:
            try:
                response = await handler(request)
            except _ApiError as exc:
                response = web.json_response(exc.body, status=exc.status)
            after = self._take_fault(route, after=True)
            if after is not None:
                response = _error_response(after)
        rec.status = response.status
        return response

    @staticmethod
    def _route_of(request: web.Request) -> str:
        info = request.match_info.route.resource
        return info.canonical if info is not None else request.path

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return user == self.shop_id and password == self.secret_key

    # -- idempotency ---------------------------------------------------------------------
    async def _idempotent(
        self,
        request: web.Request,
        action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> web.Response:
        key = request.headers.get("Idempotence-Key")
        if not key:
            raise _ApiError(
                400, "invalid_request", "Idempotence-Key header is required", "Idempotence-Key"
            )
        if len(key) > _KEY_MAX:
            raise _ApiError(
                400, "invalid_request", "Idempotence-Key is too long", "Idempotence-Key"
            )
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise _ApiError(400, "invalid_request", "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "invalid_request", "Request body must be a JSON object")
        fingerprint = hashlib.sha256(
            f"{request.method} {request.path} ".encode() + json.dumps(body, sort_keys=True).encode()
        ).hexdigest()
        stored = self._idempotency.get(key)
        if stored is not None:
            if stored[0] != fingerprint:
                raise _ApiError(
                    400,
                    "invalid_request",
                    "Idempotence-Key was already used for a different request",
                    "Idempotence-Key",
                )
            return web.json_response(stored[2], status=stored[1])
        result = await action(body)
        self._idempotency[key] = (fingerprint, 200, result)
        return web.json_response(result)

    # -- API handlers --------------------------------------------------------------------
    async def _create_payment(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._new_payment)

    async def _new_payment(self, body: dict[str, Any]) -> dict[str, Any]:
        amount = body.get("amount")
        if not isinstance(amount, dict):
            raise _ApiError(400, "invalid_request", "amount is required", "amount")
        value = _money_value(amount.get("value"), "amount.value")
        cur = amount.get("currency")
        if cur not in self.currencies:
            raise _ApiError(400, "invalid_request", "Unsupported currency", "amount.currency")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 128:
            raise _ApiError(400, "invalid_request", "Invalid description", "description")
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise _ApiError(400, "invalid_request", "Invalid metadata", "metadata")
        self._check_receipt(body.get("receipt"), value)
        payment_id = str(uuid.uuid4())
        obj: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": {"value": _fmt(value), "currency": cur},
            "created_at": _now_iso(),
            "description": description,
            "metadata": metadata,
            "recipient": {"account_id": self.shop_id, "gateway_id": "100700"},
            "refundable": False,
            "test": True,
        }
        method_id = body.get("payment_method_id")
        if method_id is not None:
            if method_id not in self.saved_methods:
                raise _ApiError(
                    400, "invalid_request", "Unknown payment method", "payment_method_id"
                )
            # A saved method is charged without the customer: it succeeds (or is declined)
            # at once.
            method = {
                "type": "bank_card",
                "id": method_id,
                "saved": True,
                "title": "Bank card *4444",
            }
            declined = self.declined_methods.get(method_id)
            if declined is not None:
                obj.update(
                    status="canceled",
                    payment_method=method,
                    cancellation_details={"party": "yoo_money", "reason": declined},
                )
            else:
                obj.update(
                    status="succeeded",
                    paid=True,
                    refundable=True,
                    captured_at=_now_iso(),
                    payment_method=method,
                )
        else:
            confirmation = body.get("confirmation")
            if not isinstance(confirmation, dict) or confirmation.get("type") != "redirect":
                raise _ApiError(
                    400,
                    "invalid_request",
                    "confirmation of type redirect is required",
                    "confirmation",
                )
            return_url = confirmation.get("return_url")
            if not isinstance(return_url, str) or not return_url:
                raise _ApiError(
                    400, "invalid_request", "return_url is required", "confirmation.return_url"
                )
            obj["confirmation"] = {
                "type": "redirect",
                "return_url": return_url,
                "confirmation_url": f"{self.base_url}/checkout/{payment_id}",
            }
        if body.get("capture") is not True:
            raise _ApiError(
                400, "invalid_request", "The emulator supports capture=true only", "capture"
            )
        obj["_save_requested"] = body.get("save_payment_method") is True
        self.payments[payment_id] = obj
        return _public(obj)

    def _check_receipt(self, receipt: object, value: Decimal) -> None:
        if receipt is None:
            if self.receipts_required:
                raise _ApiError(400, "invalid_request", "Receipt is missing", "receipt")
            return
        if not isinstance(receipt, dict):
            raise _ApiError(400, "invalid_request", "Invalid receipt", "receipt")
        customer = receipt.get("customer")
        if not isinstance(customer, dict) or not (customer.get("email") or customer.get("phone")):
            raise _ApiError(
                400,
                "invalid_request",
                "Receipt needs customer email or phone",
                "receipt.customer",
            )
        items = receipt.get("items")
        if not isinstance(items, list) or not items:
            raise _ApiError(400, "invalid_request", "Receipt has no items", "receipt.items")
        total = Decimal(0)
        for item in items:
            if not isinstance(item, dict):
                raise _ApiError(400, "invalid_request", "Invalid receipt item", "receipt.items")
            if "vat_code" not in item and "tax_system_code" not in receipt:
                raise _ApiError(
                    400, "invalid_request", "vat_code is required", "receipt.items.vat_code"
                )
            item_amount = item.get("amount")
            if not isinstance(item_amount, dict):
                raise _ApiError(400, "invalid_request", "Invalid item amount", "receipt.items")
            quantity = Decimal(str(item.get("quantity", "1")))
            total += _money_value(item_amount.get("value"), "receipt.items.amount") * quantity
        if total != value:
            raise _ApiError(
                400,
                "invalid_request",
                "Receipt total differs from the payment amount",
                "receipt.items",
            )

    async def _get_payment(self, request: web.Request) -> web.Response:
        obj = self.payments.get(request.match_info["id"])
        if obj is None:
            raise _ApiError(404, "not_found", "Payment not found", "payment_id")
        return web.json_response(_public(obj))

    async def _create_refund(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._new_refund)

    async def _new_refund(self, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments.get(str(body.get("payment_id")))
        if payment is None:
            raise _ApiError(400, "invalid_request", "Payment not found", "payment_id")
        if payment["status"] != "succeeded":
            raise _ApiError(400, "invalid_request", "Payment is not succeeded", "payment_id")
        amount = body.get("amount")
        if not isinstance(amount, dict):
            raise _ApiError(400, "invalid_request", "amount is required", "amount")
        value = _money_value(amount.get("value"), "amount.value")
        if amount.get("currency") != payment["amount"]["currency"]:
            raise _ApiError(400, "invalid_request", "Currency mismatch", "amount.currency")
        already = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        if already + value > Decimal(payment["amount"]["value"]):
            raise _ApiError(
                400, "invalid_request", "Refund exceeds the refundable amount", "amount.value"
            )
        refund_id = str(uuid.uuid4())
        refund = {
            "id": refund_id,
            "payment_id": payment["id"],
            "status": self.refund_status,
            "created_at": _now_iso(),
            "amount": {"value": _fmt(value), "currency": amount["currency"]},
        }
        self.refunds[refund_id] = refund
        if self.refund_status == "succeeded":
            self._apply_refund(refund)
        return dict(refund)

    def _apply_refund(self, refund: dict[str, Any]) -> None:
        payment = self.payments[refund["payment_id"]]
        already = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        total = already + Decimal(refund["amount"]["value"])
        currency = refund["amount"]["currency"]
        payment["refunded_amount"] = {"value": _fmt(total), "currency": currency}
        payment["refundable"] = total < Decimal(payment["amount"]["value"])

    async def _get_refund(self, request: web.Request) -> web.Response:
        refund = self.refunds.get(request.match_info["id"])
        if refund is None:
            raise _ApiError(404, "not_found", "Refund not found", "refund_id")
        return web.json_response(dict(refund))

    async def _checkout_page(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.payments:
            raise web.HTTPNotFound()
        return web.Response(text="YooKassa emulator checkout page", content_type="text/html")

    # -- acting as the payer / YooKassa --------------------------------------------------
    async def pay(
        self, payment_id: str, *, save_method: bool | None = None, notify: bool = True
    ) -> dict[str, Any]:
        """The customer pays: the payment succeeds (saving the method when it was asked
        for, or when *save_method* says so) and ``payment.succeeded`` is delivered."""
        obj = self._payment(payment_id)
        save = obj["_save_requested"] if save_method is None else save_method
        method_id = str(uuid.uuid4())
        if save:
            self.saved_methods[method_id] = payment_id
        obj.update(
            status="succeeded",
            paid=True,
            refundable=True,
            captured_at=_now_iso(),
            income_amount=dict(obj["amount"]),
            payment_method={
                "type": "bank_card",
                "id": method_id,
                "saved": bool(save),
                "title": "Bank card *4444",
            },
        )
        obj.pop("confirmation", None)
        if notify:
            await self._auto_notify("payment.succeeded", payment_id)
        return _public(obj)

    async def cancel(
        self, payment_id: str, *, reason: str = "general_decline", notify: bool = True
    ) -> dict[str, Any]:
        """The payment is canceled (declined, by default) and ``payment.canceled`` sent."""
        obj = self._payment(payment_id)
        obj.update(
            status="canceled",
            paid=False,
            cancellation_details={"party": "yoo_money", "reason": reason},
        )
        obj.pop("confirmation", None)
        if notify:
            await self._auto_notify("payment.canceled", payment_id)
        return _public(obj)

    async def expire(self, payment_id: str, *, notify: bool = True) -> dict[str, Any]:
        """The customer never paid: canceled with ``expired_on_confirmation``."""
        return await self.cancel(payment_id, reason="expired_on_confirmation", notify=notify)

    async def complete_refund(self, refund_id: str, *, notify: bool = True) -> dict[str, Any]:
        """A pending refund succeeds and ``refund.succeeded`` is delivered."""
        refund = self.refunds[refund_id]
        if refund["status"] != "succeeded":
            refund["status"] = "succeeded"
            self._apply_refund(refund)
        if notify:
            await self._auto_notify("refund.succeeded", refund_id)
        return dict(refund)

    def _payment(self, payment_id: str) -> dict[str, Any]:
        try:
            return self.payments[payment_id]
        except KeyError:
            raise KeyError(f"the emulator has no payment {payment_id}") from None

    async def _auto_notify(self, event: str, object_id: str) -> None:
        if self.webhook_url is not None:
            await self.notify(event, object_id)

    def notification_body(
        self,
        event: str,
        object_id: str,
        *,
        object_overrides: dict[str, Any] | None = None,
    ) -> bytes:
        """The notification YooKassa would send for the object's current state, as bytes.
        *object_overrides* are merged into the object (for forged notifications)."""
        source = self.refunds if event.startswith("refund.") else self.payments
        obj = _public(source[object_id]) if object_id in source else {"id": object_id}
        obj.update(object_overrides or {})
        doc = {"type": "notification", "event": event, "object": obj}
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")

    async def notify(
        self,
        event: str,
        object_id: str,
        *,
        url: str | None = None,
        source_ip: str = "127.0.0.1",
        body: bytes | None = None,
    ) -> Delivery:
        """POST the (unsigned) notification to *url* (default: the webhook URL) from the
        loopback address *source_ip*, and record what the receiver answered."""
        target = url or self.webhook_url
        if target is None:
            raise RuntimeError("no webhook URL to deliver to")
        payload = body if body is not None else self.notification_body(event, object_id)
        connector = aiohttp.TCPConnector(local_addr=(source_ip, 0), force_close=True)
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=10)
            ) as session,
            session.post(
                target, data=payload, headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            delivery = Delivery(
                event, object_id, payload, source_ip, resp.status, await resp.text()
            )
        self.deliveries.append(delivery)
        return delivery


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API shows it (without the emulator's private fields)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}
