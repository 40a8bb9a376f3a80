"""A local Crypto Pay API (@CryptoBot) for tests, over real HTTP on 127.0.0.1.

It serves ``{base_url}/api/{method}`` for ``getMe``, ``createInvoice``, ``getInvoices`` and
``deleteInvoice``, taking parameters from a GET query string or a POST JSON/form body like
the real API, checks the ``Crypto-Pay-API-Token`` header (401 ``UNAUTHORIZED`` in the
provider's envelope), and returns invoices with every field aiocryptopay's ``Invoice``
model requires. A test then acts as the payer: :meth:`CryptoPayEmulator.pay` marks an
invoice paid and POSTs a genuinely signed ``invoice_paid`` update to ``webhook_url``.

Error names other than ``UNAUTHORIZED`` (``AMOUNT_TOO_SMALL``, ``INVOICE_NOT_FOUND``, ...)
are UNVERIFIED guesses in the provider's style; the gateway only relies on the envelope
and on the ``AMOUNT_TOO`` prefix for amount limits.

Fault knobs: :meth:`fail_next` (the next N calls answer status S), ``latency`` (seconds
before each answer), ``error_rate`` (probability of a 500), all reset per emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from vpnshop.testing._emulator import FaultKnobs, LoopbackServer

_ASSETS = ("USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC")
_FIATS = ("RUB", "USD", "EUR", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@attrs.frozen
class Delivery:
    """One webhook POST the emulator made, and what our server answered."""

    body: bytes
    headers: Mapping[str, str]
    status: int  # 0 when the connection failed


class CryptoPayEmulator(LoopbackServer, FaultKnobs):
    """An in-memory Crypto Pay app. Use as ``async with CryptoPayEmulator(...) as emu``."""

    def __init__(
        self,
        token: str = "1234:AAEmulatorTokenForTests",  # noqa: S107 - a test token
        *,
        webhook_url: str | None = None,
        min_amount: Decimal | None = None,
        max_amount: Decimal | None = None,
        seed: int = 0,
    ) -> None:
        LoopbackServer.__init__(self)
        FaultKnobs.__init__(self, seed)
        self.token = token
        self.webhook_url = webhook_url
        self.min_amount = min_amount
        self.max_amount = max_amount
        self.invoices: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (http method, api method), incl. failures
        self.deliveries: list[Delivery] = []
        self._ids = itertools.count(1001)
        self._update_ids = itertools.count(1)
        self.app_id = 4242

    # -- lifetime: LoopbackServer; its base_url is the gateway's ``base_url`` --------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/api/{method}", self._handle)
        app.router.add_route("POST", "/api/{method}", self._handle)
        return app

    # -- fault knobs: latency, error_rate (FaultKnobs) ------------------------------------
    def fail_next(self, count: int, status: int = 500, method: str | None = None) -> None:
        """Answer the next *count* calls (of *method*, or any) with HTTP *status*."""
        self._queue_fault(count, status, method)

    # -- HTTP -----------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, name: str) -> web.Response:
        return web.json_response(
            {"ok": False, "error": {"code": status, "name": name}}, status=status
        )

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("JSON body is not an object")
                params.update(body)
            else:
                params.update(dict(await request.post()))
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append((request.method, method))
        fault = await self._injected_status(method)
        if fault is not None:
            return self._error(fault, "INTERNAL_ERROR" if fault >= 500 else "FAULT_INJECTED")
        given = request.headers.get("Crypto-Pay-API-Token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return self._error(401, "UNAUTHORIZED")
        try:
            params = await self._params(request)
        except ValueError:
            return self._error(400, "PARAMS_INVALID")
        handler = {
            "getMe": self._get_me,
            "createInvoice": self._create_invoice,
            "getInvoices": self._get_invoices,
            "deleteInvoice": self._delete_invoice,
        }.get(method)
        if handler is None:
            return self._error(405, "METHOD_NOT_FOUND")
        result = handler(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    def _get_me(self, params: dict[str, Any]) -> Any:
        return {
            "app_id": self.app_id,
            "name": "vpnshop-emulator",
            "payment_processing_bot_username": "CryptoBot",
        }

    def _create_invoice(self, params: dict[str, Any]) -> Any:
        currency_type = str(params.get("currency_type", "crypto"))
        if currency_type not in ("crypto", "fiat"):
            return self._error(400, "CURRENCY_TYPE_INVALID")
        try:
            amount = Decimal(str(params.get("amount", "")))
        except InvalidOperation:
            return self._error(400, "AMOUNT_INVALID")
        if not amount.is_finite() or amount <= 0:
            return self._error(400, "AMOUNT_INVALID")
        if self.min_amount is not None and amount < self.min_amount:
            return self._error(400, "AMOUNT_TOO_SMALL")
        if self.max_amount is not None and amount > self.max_amount:
            return self._error(400, "AMOUNT_TOO_BIG")
        asset = fiat = None
        if currency_type == "fiat":
            fiat = str(params.get("fiat", ""))
            if fiat not in _FIATS:
                return self._error(400, "FIAT_INVALID")
        else:
            asset = str(params.get("asset", ""))
            if asset not in _ASSETS:
                return self._error(400, "ASSET_INVALID")
        accepted = params.get("accepted_assets")
        if isinstance(accepted, list):
            accepted = ",".join(str(a) for a in accepted)
        payload = params.get("payload")
        if payload is not None and len(str(payload).encode()) > 4096:
            return self._error(400, "PAYLOAD_TOO_LONG")
        description = params.get("description")
        if description is not None and len(str(description)) > 1024:
            return self._error(400, "DESCRIPTION_TOO_LONG")
        expires_in = params.get("expires_in")
        now = datetime.now(UTC)
        invoice_id = next(self._ids)
        invoice_hash = "IV" + secrets.token_hex(6).upper()
        invoice: dict[str, Any] = {
            "invoice_id": invoice_id,
            "hash": invoice_hash,
            "currency_type": currency_type,
            "status": "active",
            "amount": str(params["amount"]),
            "bot_invoice_url": f"https://t.me/CryptoBot?start={invoice_hash}",
            "mini_app_invoice_url": f"https://t.me/CryptoBot/app?startapp=invoice-{invoice_hash}",
            "web_app_invoice_url": f"https://app.send.tg/invoices/{invoice_hash}",
            "created_at": _iso(now),
            "allow_comments": True,
            "allow_anonymous": True,
        }
        if asset:
            invoice["asset"] = asset
        if fiat:
            invoice["fiat"] = fiat
            invoice["accepted_assets"] = (accepted or ",".join(_ASSETS[:4])).split(",")
        if description is not None:
            invoice["description"] = str(description)
        if payload is not None:
            invoice["payload"] = str(payload)
        if expires_in is not None:
            try:
                seconds = int(expires_in)
            except (TypeError, ValueError):
                return self._error(400, "EXPIRES_IN_INVALID")
            if not 1 <= seconds <= 2_678_400:
                return self._error(400, "EXPIRES_IN_INVALID")
            invoice["expiration_date"] = _iso(now + timedelta(seconds=seconds))
        self.invoices[invoice_id] = invoice
        return invoice

    def _get_invoices(self, params: dict[str, Any]) -> Any:
        items = list(self.invoices.values())
        ids = params.get("invoice_ids")
        if ids is not None:
            raw = ids if isinstance(ids, list) else str(ids).split(",")
            try:
                wanted = {int(x) for x in raw if str(x).strip()}
            except ValueError:
                return self._error(400, "INVOICE_IDS_INVALID")
            items = [i for i in items if i["invoice_id"] in wanted]
        if params.get("status"):
            items = [i for i in items if i["status"] == params["status"]]
        offset = int(params.get("offset", 0) or 0)
        count = min(int(params.get("count", 100) or 100), 1000)
        return {"items": items[offset : offset + count]}

    def _delete_invoice(self, params: dict[str, Any]) -> Any:
        try:
            invoice_id = int(params.get("invoice_id", ""))
        except ValueError:
            return self._error(400, "INVOICE_ID_INVALID")
        if self.invoices.pop(invoice_id, None) is None:
            return self._error(400, "INVOICE_NOT_FOUND")
        return True

    # -- the payer ------------------------------------------------------------------------
    def _invoice(self, invoice_id: int | str) -> dict[str, Any]:
        return self.invoices[int(invoice_id)]

    def expire(self, invoice_id: int | str) -> None:
        """Let the invoice run out (no webhook: Crypto Pay sends only invoice_paid)."""
        self._invoice(invoice_id)["status"] = "expired"

    def mark_paid(self, invoice_id: int | str, *, paid_asset: str = "USDT") -> dict[str, Any]:
        """Mark the invoice paid as the payer would, without sending a webhook."""
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "active":
            raise ValueError(f"invoice {invoice_id} is {invoice['status']}")
        invoice.update(
            status="paid",
            paid_at=_iso(datetime.now(UTC)),
            paid_anonymously=False,
            paid_asset=paid_asset if invoice["currency_type"] == "fiat" else invoice["asset"],
            paid_amount=invoice["amount"],
            paid_fiat_rate="1.00",
            paid_usd_rate="1.00",
            fee_asset=paid_asset,
            fee_amount="0",
        )
        return invoice

    def notification_body(
        self,
        invoice_id: int | str,
        *,
        update_type: str = "invoice_paid",
        token: str | None = None,
        tamper: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The raw bytes and headers of an update for *invoice_id*, not sent.

        *token* signs with another app's token (a forgery); *tamper* overrides invoice
        fields AFTER signing (the signature then no longer matches the body).
        """
        invoice = dict(self._invoice(invoice_id))
        update = {
            "update_id": next(self._update_ids),
            "update_type": update_type,
            "request_date": _iso(datetime.now(UTC)),
            "payload": invoice,
        }
        body = json.dumps(update, separators=(",", ":")).encode()
        signature = self.sign(body, token)
        if tamper:
            invoice.update(tamper)
            body = json.dumps(update, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json", "crypto-pay-api-signature": signature}

    def sign(self, body: bytes, token: str | None = None) -> str:
        secret = hashlib.sha256((token or self.token).encode()).digest()
        return hmac.new(secret, body, hashlib.sha256).hexdigest()

    async def deliver(self, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """POST *body* to ``webhook_url`` and record the answer."""
        if not self.webhook_url:
            raise RuntimeError("no webhook_url configured")
        status = 0
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
                s.post(self.webhook_url, data=body, headers=dict(headers)) as resp,
            ):
                status = resp.status
        except aiohttp.ClientError:
            status = 0
        delivery = Delivery(body=body, headers=dict(headers), status=status)
        self.deliveries.append(delivery)
        return delivery

    async def pay(self, invoice_id: int | str, *, paid_asset: str = "USDT") -> Delivery | None:
        """The payer pays; the signed ``invoice_paid`` update goes to ``webhook_url``.

        Returns the delivery, or None when no webhook URL is configured (polling only).
        """
        self.mark_paid(invoice_id, paid_asset=paid_asset)
        if not self.webhook_url:
            return None
        body, headers = self.notification_body(invoice_id)
        return await self.deliver(body, headers)
