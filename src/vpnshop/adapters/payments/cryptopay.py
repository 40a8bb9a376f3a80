"""Crypto Pay (@CryptoBot) payment gateway, spoken directly over aiohttp.

Why not ``aiocryptopay`` (the usual SDK):

* it pins ``certifi>=2023.5.7,<2024``, an outdated CA bundle that conflicts with
  everything else that depends on certifi;
* it pulls pydantic 2 into the webhooks process only to wrap a handful of JSON fields;
* it sends every call as GET with the parameters in the query string (payloads and
  descriptions end up in access logs; POST JSON is accepted by the API and is what we use);
* its webhook helper compares signatures with ``==`` (not constant-time) over a decoded
  string, and answers a bad signature with an aiohttp 500, which the provider retries.

The API is small: ``POST {host}/api/{method}`` with header ``Crypto-Pay-API-Token`` and the
envelope ``{"ok": true, "result": ...}`` / ``{"ok": false, "error": {"code", "name"}}``.

Money: invoices are created in fiat (RUB by default; the payer picks a crypto asset from
``accepted_assets``), so the amount the provider confirms is the invoice's fiat ``amount``
in the invoice's ``fiat`` currency, exactly what the order was priced in.

Idempotency: Crypto Pay has no idempotency key. A retried ``createInvoice`` after a lost
response may create a second, never-shown invoice; that is harmless because both carry our
payment id as ``payload`` and the customer only ever sees the URL we returned. Within one
process, repeating :meth:`CryptoPayGateway.create_payment` with the same idempotency key
returns the first invoice instead of creating another (a bounded in-memory memo).

Webhooks: header ``crypto-pay-api-signature`` is the hex HMAC-SHA256 of the raw body keyed
with the raw SHA-256 digest of the API token. Only ``invoice_paid`` updates are acted on;
every other authentic update is IGNORED (answered 2xx so the provider stops retrying).
The dedupe key is the invoice id (``update_id`` is documented as non-unique). Crypto Pay
publishes no source address list and no merchant id in the update: the signature, keyed
with our own app token, is the whole authentication. There is no refund API.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from vpnshop.adapters.payments._common import (
    HttpSessionOwner,
    TransientError,
    call_with_retries,
    hmac_sha256_hex,
    is_transient_status,
    read_response,
    verify_hmac_header,
)
from vpnshop.adapters.payments._input import (
    int_field,
    load_object,
    parse_utc,
    shown,
    text_field,
    vetted,
)
from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import Currency, Money, currency
from vpnshop.ports.payments import (
    AmountOutOfRangeError,
    Checkout,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    ProviderPayment,
    ProviderRejectedError,
    ProviderStatus,
    RefundResult,
    WebhookMalformedError,
    WebhookReply,
    WebhookRequest,
)

log = logging.getLogger(__name__)

PROVIDER: Final = "cryptopay"
SIGNATURE_HEADER: Final = "crypto-pay-api-signature"
TOKEN_HEADER: Final = "Crypto-Pay-API-Token"  # noqa: S105 - a header name, not a secret
MAX_EXPIRES_IN: Final = 2_678_400  # documented upper bound of ``expires_in`` (31 days)
_MEMO_SIZE: Final = 1024


class CryptoPayNetwork(enum.StrEnum):
    MAINNET = "mainnet"  # @CryptoBot
    TESTNET = "testnet"  # @CryptoTestnetBot


HOSTS: Final[Mapping[CryptoPayNetwork, str]] = {
    CryptoPayNetwork.MAINNET: "https://pay.crypt.bot",
    CryptoPayNetwork.TESTNET: "https://testnet-pay.crypt.bot",
}


class CryptoPayConfigError(ValueError):
    """The Crypto Pay gateway is enabled but a required setting is missing or invalid."""

    def __init__(self, setting: str, why: str = "is required") -> None:
        super().__init__(f"Crypto Pay: setting {setting!r} {why}")
        self.setting = setting


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise CryptoPayConfigError(attribute.name, "must be positive")


@attrs.frozen
class CryptoPaySettings:
    """Configuration of one Crypto Pay app. ``token`` is the app's API token."""

    token: str = attrs.field(repr=False)
    network: CryptoPayNetwork = CryptoPayNetwork.MAINNET
    base_url: str | None = None  # overrides ``network`` (emulators, proxies)
    fiat: str = "RUB"
    accepted_assets: tuple[str, ...] = ()  # empty: every asset the app accepts
    expires_in: int = 3600  # seconds an invoice stays payable
    min_amount: Money | None = None
    max_amount: Money | None = None
    timeout: float = attrs.field(default=15.0, validator=_positive)  # per attempt, seconds
    attempts: int = attrs.field(default=3, validator=_positive)
    retry_wait: float = attrs.field(default=0.5, validator=_positive)  # first backoff, s

    @property
    def api_root(self) -> str:
        host = self.base_url or HOSTS[self.network]
        return host.rstrip("/") + "/api/"


def _as_utc(raw: object) -> datetime | None:
    return parse_utc(raw)  # the API speaks UTC; never keep a naive datetime


def webhook_signature(token: str, body: bytes) -> str:
    """The ``crypto-pay-api-signature`` value Crypto Pay sends for *body*."""
    return hmac_sha256_hex(hashlib.sha256(token.encode()).digest(), body)


_STATUSES: Final[Mapping[str, ProviderStatus]] = {
    "active": ProviderStatus.PENDING,
    "paid": ProviderStatus.SUCCEEDED,
    "expired": ProviderStatus.EXPIRED,
}


class CryptoPayGateway(HttpSessionOwner):
    """:class:`vpnshop.ports.payments.PaymentGateway` for Crypto Pay."""

    def __init__(self, settings: CryptoPaySettings) -> None:
        if not settings.token or not settings.token.strip():
            raise CryptoPayConfigError("token")
        try:
            self._currency = currency(settings.fiat)
        except DomainError:
            raise CryptoPayConfigError(
                "fiat", f"has an unknown currency {settings.fiat!r}"
            ) from None
        for name in ("min_amount", "max_amount"):
            limit: Money | None = getattr(settings, name)
            if limit is not None and limit.currency != self._currency:
                raise CryptoPayConfigError(name, f"must be in {self._currency.code}")
        if not 1 <= settings.expires_in <= MAX_EXPIRES_IN:
            raise CryptoPayConfigError("expires_in", f"must be within 1..{MAX_EXPIRES_IN}")
        self._settings = settings
        self._signing_key = hashlib.sha256(settings.token.encode()).digest()
        super().__init__(settings.timeout, headers={TOKEN_HEADER: settings.token})
        self._memo: OrderedDict[str, Checkout] = OrderedDict()

    # -- PaymentGateway properties --------------------------------------------------------
    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def currency(self) -> Currency:
        return self._currency

    @property
    def min_amount(self) -> Money | None:
        return self._settings.min_amount

    @property
    def max_amount(self) -> Money | None:
        return self._settings.max_amount

    @property
    def supports_refund(self) -> bool:
        return False

    @property
    def webhook_reply(self) -> WebhookReply:
        return WebhookReply(status=200, body="OK")

    # -- API calls ------------------------------------------------------------------------
    async def _call_once(self, method: str, params: Mapping[str, object]) -> Any:
        url = self._settings.api_root + method
        status, raw = await read_response(
            self._client().post(url, json=dict(params)), prefix=f"{method}: "
        )
        if is_transient_status(status):
            raise TransientError(f"{method}: HTTP {status}")
        try:
            envelope = json.loads(raw)
        except ValueError:
            raise ProviderRejectedError(f"{method}: HTTP {status}, not JSON") from None
        if not isinstance(envelope, dict):
            raise ProviderRejectedError(f"{method}: HTTP {status}, unexpected body")
        if envelope.get("ok") is True and status < 400:
            return envelope.get("result")
        error = envelope.get("error")
        code: object = status
        name: object = "UNKNOWN"
        if isinstance(error, dict):
            code, name = error.get("code", status), error.get("name", "UNKNOWN")
        if code == 429 or (isinstance(code, int) and code >= 500):
            raise TransientError(f"{method}: {code} {name}")
        if isinstance(name, str) and name.startswith("AMOUNT_TOO"):
            raise AmountOutOfRangeError(f"{method}: {code} {name}")
        raise ProviderRejectedError(f"{method}: {code} {name}")

    async def _call(self, method: str, params: Mapping[str, object]) -> Any:
        return await call_with_retries(
            lambda: self._call_once(method, params),
            attempts=self._settings.attempts,
            wait_initial=self._settings.retry_wait,
            wait_max=10,
            unavailable=str,
        )

    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        """Create a fiat invoice; its ``payload`` is our payment id."""
        if request.amount.currency != self._currency:
            raise ProviderRejectedError(
                f"Crypto Pay is configured for {self._currency.code}, "
                f"not {request.amount.currency.code}"
            )
        if not request.amount.is_positive:
            raise AmountOutOfRangeError(f"{request.amount} is not a positive amount")
        lo, hi = self._settings.min_amount, self._settings.max_amount
        if (lo is not None and request.amount < lo) or (hi is not None and request.amount > hi):
            raise AmountOutOfRangeError(f"{request.amount} is outside [{lo}, {hi}]")
        remembered = self._memo.get(request.idempotency_key)
        if remembered is not None:
            return remembered
        params: dict[str, object] = {
            "currency_type": "fiat",
            "fiat": self._currency.code,
            "amount": request.amount.format(),
            "payload": request.payment_id,
            "description": request.description[:1024],
            "expires_in": self._settings.expires_in,
        }
        if self._settings.accepted_assets:
            params["accepted_assets"] = ",".join(self._settings.accepted_assets)
        result = await self._call("createInvoice", params)
        if not isinstance(result, dict) or "invoice_id" not in result:
            raise ProviderRejectedError("createInvoice: no invoice in the answer")
        url = result.get("bot_invoice_url") or result.get("pay_url")
        checkout = Checkout(
            external_id=str(result["invoice_id"]),
            url=str(url) if url else None,
            expires_at=_as_utc(result.get("expiration_date")),
        )
        self._memo[request.idempotency_key] = checkout
        while len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)
        return checkout

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        """The invoice by id via ``getInvoices``; None without an id or when unknown.

        Crypto Pay cannot search by ``payload``, so a payment whose create call never
        returned an invoice id cannot be looked up (it also cannot have been shown).
        """
        if not external_id or not external_id.isdigit():
            return None
        result = await self._call("getInvoices", {"invoice_ids": external_id})
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise ProviderRejectedError("getInvoices: no items in the answer")
        for item in items:
            if isinstance(item, dict) and str(item.get("invoice_id")) == external_id:
                return self._provider_payment(item)
        return None

    def _provider_payment(self, invoice: Mapping[str, Any]) -> ProviderPayment:
        status = _STATUSES.get(str(invoice.get("status")))
        if status is None:
            raise ProviderRejectedError(f"unknown invoice status {invoice.get('status')!r}")
        try:
            amount = self._invoice_amount(invoice)
        except ValueError as exc:
            raise ProviderRejectedError(str(exc)) from None
        payload = invoice.get("payload")
        return ProviderPayment(
            external_id=str(invoice["invoice_id"]),
            status=status,
            amount=amount,
            payment_ref=payload if isinstance(payload, str) and payload else None,
        )

    @staticmethod
    def _invoice_amount(invoice: Mapping[str, Any]) -> Money:
        if invoice.get("currency_type") != "fiat":
            raise ValueError("not a fiat invoice, so not one of ours")
        raw, fiat = invoice.get("amount"), invoice.get("fiat")
        if not isinstance(raw, str) or not isinstance(fiat, str):
            raise ValueError("invoice amount/fiat missing")
        try:
            return Money.parse(raw, fiat)
        except DomainError as exc:
            raise ValueError(f"invoice amount {shown(raw)} {shown(fiat)}: {exc}") from None

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        raise ProviderRejectedError("Crypto Pay has no refund API; refund by hand in the bot")

    # -- webhooks -------------------------------------------------------------------------
    def _authenticate(self, request: WebhookRequest) -> None:
        verify_hmac_header(request, SIGNATURE_HEADER, self._signing_key)

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """Authenticate the raw body, then read the (now trusted) update."""
        self._authenticate(request)
        update = load_object(request.body, "update")
        update_type = update.get("update_type")
        update_id = update.get("update_id")
        occurred = _as_utc(update.get("request_date"))
        if update_type != "invoice_paid":
            return vetted(
                PaymentEvent(
                    provider=PROVIDER,
                    kind=EventKind.IGNORED,
                    dedupe_key=f"update:{shown(update_id)}",
                    occurred_at=occurred,
                )
            )
        invoice = update.get("payload")
        if not isinstance(invoice, dict):
            raise WebhookMalformedError("invoice_paid without an invoice")
        invoice_id = invoice.get("invoice_id")
        if isinstance(invoice_id, bool) or not isinstance(invoice_id, int):
            raise WebhookMalformedError("invoice_paid without an integer invoice_id")
        invoice_id = int_field(invoice_id, "invoice_id")
        if invoice.get("status") != "paid":
            raise WebhookMalformedError(f"invoice_paid with status {shown(invoice.get('status'))}")
        payload = invoice.get("payload")
        if invoice.get("currency_type") != "fiat" or not isinstance(payload, str) or not payload:
            # Authentic, but an invoice someone created by hand in the bot, not by us.
            log.warning("Crypto Pay invoice %s was not created by vpnshop; ignored", invoice_id)
            return vetted(
                PaymentEvent(
                    provider=PROVIDER,
                    kind=EventKind.IGNORED,
                    dedupe_key=str(invoice_id),
                    external_id=str(invoice_id),
                    occurred_at=occurred,
                )
            )
        try:
            amount = self._invoice_amount(invoice)
        except ValueError as exc:
            raise WebhookMalformedError(str(exc)) from None
        return vetted(
            PaymentEvent(
                provider=PROVIDER,
                kind=EventKind.PAYMENT_SUCCEEDED,
                dedupe_key=str(invoice_id),
                external_id=str(invoice_id),
                payment_ref=text_field(payload, "payload"),
                amount=amount,
                occurred_at=_as_utc(invoice.get("paid_at")) or occurred,
            )
        )
