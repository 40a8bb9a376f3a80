"""YooKassa (API v3) payment gateway, spoken directly over aiohttp.

Why not the official ``yookassa`` SDK: it is synchronous (``requests``, a new session per
call) and keeps its credentials in global class state (``Configuration.configure``), so on
the event loop every call would block, or would need a thread pool, and one process could
serve only one shop. The part of the REST API we use is small (Basic auth, JSON, one
``Idempotence-Key`` header), so this adapter talks to it with the one
``aiohttp.ClientSession`` it owns.

Requests
    * ``Authorization: Basic base64(shopId:secret)`` on every call.
    * Every POST carries an ``Idempotence-Key`` derived from our request (the checkout's or
      refund's idempotency key, hashed when it is longer than YooKassa accepts) and the very
      same key is sent on every retry, as YooKassa's retry rules ask: a 500 or a timeout
      means "result unknown", and only the same key makes the retry safe.
    * Retried (tenacity, bounded, exponential backoff): connection errors, timeouts, 429,
      5xx, and 202 (YooKassa's "still processing, ask again"). Never retried: other 4xx,
      which raise :class:`YooKassaRejectedError` (a ``ProviderRejectedError``) carrying
      YooKassa's ``code``, ``description`` and ``parameter``.

Notifications
    YooKassa does not sign them, so :meth:`YooKassaGateway.parse_webhook`:

    1. checks ``request.remote_ip`` against the allowlist (default: YooKassa's documented
       list, IPv6 /32 included; configurable so tests can allow 127.0.0.1) and raises
       ``WebhookAuthError`` otherwise;
    2. parses ``{"type":"notification","event":...,"object":{...}}`` (else
       ``WebhookMalformedError``);
    3. ALWAYS re-fetches the payment (or refund) by id from the API and builds the event
       only from what the API returned. The body's status, amount and metadata are never
       used. An id the API does not know raises ``WebhookAuthError``; an API that cannot be
       reached, or refuses our credentials, raises ``ProviderUnavailableError`` (the shell
       answers 5xx and YooKassa retries).

    When the API disagrees with the notification (the body says ``payment.succeeded``, the
    API says ``pending``) the result is an ``IGNORED`` event, not an error: the shell
    answers 2xx, nothing is credited, and the real status change (if it ever happens) comes
    with its own notification and is also found by the reconciliation sweep through
    :meth:`YooKassaGateway.fetch_payment`. Raising instead would make YooKassa re-send, for
    up to a day, a notification we have already proven untrue. Whatever the notification
    says, the API's status decides the event kind: an API-``canceled`` payment yields
    ``PAYMENT_CANCELED`` (``PAYMENT_EXPIRED`` for ``expired_on_confirmation``) even if the
    body said ``succeeded``; ``waiting_for_capture`` (not expected: we create payments
    with ``capture: true``) is ``IGNORED``.

    ``dedupe_key`` is the notification's ``object.id`` (YooKassa's webhook docs): the
    payment id for payment events, the refund id for refunds. IGNORED events get a key that
    also names the event and the API status, so that recording an ignored event can never
    swallow the later, real success of the same payment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, NoReturn

import attrs

from vpnshop.adapters.payments._common import (
    HttpSessionOwner,
    TransientError,
    call_with_retries,
    check_amount,
    is_transient_status,
    read_response,
    str_tuple,
)
from vpnshop.adapters.payments._input import load_json, vetted
from vpnshop.adapters.payments.netcheck import IpAllowlist
from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import RUB, Currency, Money
from vpnshop.ports.payments import (
    Checkout,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    ProviderPayment,
    ProviderRejectedError,
    ProviderStatus,
    ProviderUnavailableError,
    RefundResult,
    WebhookAuthError,
    WebhookMalformedError,
    WebhookReply,
    WebhookRequest,
)

PROVIDER: Final = "yookassa"
YOOKASSA_API_URL: Final = "https://api.yookassa.ru/v3"

# https://yookassa.ru/developers/using-api/webhooks#ip, the list YooKassa publishes. The SDK's own
# helper uses narrower IPv6 /64s; the documented /32 is what YooKassa publishes.
YOOKASSA_NOTIFICATION_IPS: Final[tuple[str, ...]] = (
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.156.11",
    "77.75.156.35",
    "77.75.154.128/25",
    "2a02:5180::/32",
)

# UNVERIFIED limit (commonly quoted as 64); longer keys are hashed to 64 hex characters.
IDEMPOTENCE_KEY_MAX: Final = 64
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
# YooKassa ids are UUID-like; anything else in a notification is refused before it can be
# put into a URL path ("../refunds/x").
_OBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{0,63}$")
_DESCRIPTION_MAX: Final = 128

_ONE_RUBLE: Final = Money(100, RUB)

_PAYMENT_EVENTS: Final = frozenset(
    {"payment.succeeded", "payment.canceled", "payment.waiting_for_capture"}
)


class YooKassaConfigError(ValueError):
    """YooKassa is enabled but a required setting is missing or invalid."""

    def __init__(self, setting: str, reason: str = "is not set") -> None:
        super().__init__(f"YooKassa is enabled but {setting} {reason}")
        self.setting = setting


class YooKassaRejectedError(ProviderRejectedError):
    """YooKassa answered 4xx; ``code``/``description``/``parameter`` are from its body."""

    def __init__(
        self,
        http_status: int,
        code: str | None,
        description: str | None,
        parameter: str | None = None,
    ) -> None:
        where = f" (parameter {parameter})" if parameter else ""
        super().__init__(f"YooKassa HTTP {http_status} {code}: {description}{where}")
        self.http_status = http_status
        self.error_code = code
        self.description = description
        self.parameter = parameter


class _NotFoundError(Exception):
    """YooKassa answered 404 for a GET."""


@attrs.frozen
class YooKassaSettings:
    """How to reach one YooKassa shop. Secrets stay out of ``repr``.

    ``return_url`` is where YooKassa sends the customer after paying (a checkout request may
    bring its own). ``send_receipt`` adds a 54-FZ receipt (customer email + one item with
    ``vat_code``) to every payment; it then needs the customer's email. ``min_amount``
    defaults to 1 RUB; the real limits depend on the payment method (UNVERIFIED), so both
    are configurable.
    """

    shop_id: str = attrs.field(default="", converter=str)
    secret_key: str = attrs.field(default="", repr=False)
    return_url: str | None = None
    api_url: str = YOOKASSA_API_URL
    allowed_ips: tuple[str, ...] = attrs.field(
        default=YOOKASSA_NOTIFICATION_IPS, converter=str_tuple
    )
    currency: Currency = RUB
    min_amount: Money | None = _ONE_RUBLE
    max_amount: Money | None = None
    send_receipt: bool = False
    vat_code: int = 1
    tax_system_code: int | None = None
    receipt_payment_subject: str = "service"
    receipt_payment_mode: str = "full_payment"
    timeout_seconds: float = 15.0
    max_attempts: int = 3
    retry_wait_initial: float = 0.5
    retry_wait_max: float = 5.0


def idempotence_key(key: str) -> str:
    """The ``Idempotence-Key`` for our own idempotency *key*: the key itself when YooKassa
    will take it as is, else its SHA-256 (64 hex characters). Deterministic, so every
    retry of the same request sends the same header."""
    if _SAFE_KEY.match(key):
        return key
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class YooKassaGateway(HttpSessionOwner):
    """:class:`~vpnshop.ports.payments.PaymentGateway` for YooKassa.

    Owns one ``aiohttp.ClientSession`` (created on first use, closed by :meth:`aclose` or
    ``async with``). Raises :class:`YooKassaConfigError` when the shop id or secret key is
    missing, so a half-configured provider is disabled rather than unverified.
    """

    def __init__(self, settings: YooKassaSettings, *, name: str = PROVIDER) -> None:
        if not settings.shop_id.strip():
            raise YooKassaConfigError("shop_id")
        if not settings.secret_key.strip():
            raise YooKassaConfigError("secret_key")
        if settings.max_attempts < 1:
            raise YooKassaConfigError("max_attempts", "must be at least 1")
        for limit_name in ("min_amount", "max_amount"):
            limit = getattr(settings, limit_name)
            if limit is not None and limit.currency != settings.currency:
                raise YooKassaConfigError(limit_name, f"is not in {settings.currency.code}")
        try:
            self._allowlist = IpAllowlist(settings.allowed_ips)
        except ValueError as exc:
            raise YooKassaConfigError("allowed_ips", f"is invalid: {exc}") from None
        self._settings = settings
        self._name = name
        self._base = settings.api_url.rstrip("/")
        credentials = f"{settings.shop_id}:{settings.secret_key}".encode()
        self._auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        super().__init__(settings.timeout_seconds)

    # -- PaymentGateway properties -------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def currency(self) -> Currency:
        return self._settings.currency

    @property
    def min_amount(self) -> Money | None:
        return self._settings.min_amount

    @property
    def max_amount(self) -> Money | None:
        return self._settings.max_amount

    @property
    def supports_refund(self) -> bool:
        return True

    @property
    def webhook_reply(self) -> WebhookReply:
        return WebhookReply(status=200, body="", content_type="text/plain")

    @property
    def allowlist(self) -> IpAllowlist:
        return self._allowlist

    # -- operations ----------------------------------------------------------------------
    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        """Create a redirect payment with ``capture: true``; idempotent on
        ``request.idempotency_key`` (sent as ``Idempotence-Key``, also on retries)."""
        self._check_amount(request.amount)
        return_url = request.return_url or self._settings.return_url
        if not return_url:
            raise ProviderRejectedError(
                "YooKassa needs a return_url (set it in the settings or the request)"
            )
        body: dict[str, Any] = {
            "amount": _amount_json(request.amount),
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": return_url},
            "description": request.description[:_DESCRIPTION_MAX],
            "metadata": {"payment_id": request.payment_id, "order_id": request.order_id},
        }
        if request.save_payment_method:
            body["save_payment_method"] = True
        if self._settings.send_receipt:
            body["receipt"] = self._receipt(request)
        obj = await self._request(
            "POST", "/payments", body=body, key=idempotence_key(request.idempotency_key)
        )
        self._check_echo(obj, request)
        confirmation = obj.get("confirmation")
        url = confirmation.get("confirmation_url") if isinstance(confirmation, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderRejectedError(
                f"YooKassa returned payment {obj.get('id')} ({obj.get('status')}) "
                "without a confirmation_url"
            )
        return Checkout(external_id=str(obj["id"]), url=url)

    async def charge_saved_method(
        self, request: CheckoutRequest, saved_method_id: str
    ) -> ProviderPayment:
        """Charge a saved payment method (auto-renewal): no confirmation, no customer action.

        Not part of the port; returns YooKassa's view right after the call (often already
        ``succeeded``; the notification confirms it either way)."""
        self._check_amount(request.amount)
        body: dict[str, Any] = {
            "amount": _amount_json(request.amount),
            "capture": True,
            "payment_method_id": saved_method_id,
            "description": request.description[:_DESCRIPTION_MAX],
            "metadata": {"payment_id": request.payment_id, "order_id": request.order_id},
        }
        if self._settings.send_receipt:
            body["receipt"] = self._receipt(request)
        obj = await self._request(
            "POST", "/payments", body=body, key=idempotence_key(request.idempotency_key)
        )
        self._check_echo(obj, request)
        return self._provider_payment(obj)

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        """``GET /v3/payments/{external_id}``. YooKassa cannot be searched by our metadata,
        so without an ``external_id`` (the create never answered) this returns None; the
        retried create with the same idempotency key recovers the payment instead."""
        if not external_id or not _OBJECT_ID.match(external_id):
            return None
        obj = await self._get("payments", external_id)
        if obj is None:
            return None
        return self._provider_payment(obj)

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        """``POST /v3/refunds``. ``succeeded`` is False while YooKassa still processes it
        (a ``refund.succeeded`` notification follows); a canceled refund raises
        ``ProviderRejectedError``."""
        if amount.currency != self._settings.currency or not amount.is_positive:
            raise ProviderRejectedError(f"cannot refund {amount} through YooKassa")
        body = {"payment_id": external_id, "amount": _amount_json(amount)}
        obj = await self._request(
            "POST", "/refunds", body=body, key=idempotence_key(idempotency_key)
        )
        status = obj.get("status")
        if status == "canceled":
            details = obj.get("cancellation_details") or {}
            reason = details.get("reason") if isinstance(details, dict) else None
            raise ProviderRejectedError(f"YooKassa canceled refund {obj.get('id')}: {reason}")
        if not isinstance(obj.get("id"), str):
            _bad_response("refund without an id")
        return RefundResult(external_id=obj["id"], succeeded=status == "succeeded")

    # -- notifications -------------------------------------------------------------------
    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """Authenticate (source address, then re-fetch) and parse a notification; see the
        module docstring for why a disagreement with the API yields an IGNORED event."""
        if not self._allowlist.allows(request.remote_ip):
            raise WebhookAuthError(
                f"YooKassa notification from {request.remote_ip!r}, outside the allowlist"
            )
        doc = load_json(request.body, "YooKassa notification")
        if not isinstance(doc, dict) or doc.get("type") != "notification":
            raise WebhookMalformedError("not a YooKassa notification (type != notification)")
        event = doc.get("event")
        obj = doc.get("object")
        if not isinstance(event, str) or not event or not isinstance(obj, dict):
            raise WebhookMalformedError("YooKassa notification without event or object")
        obj_id = obj.get("id")
        if not isinstance(obj_id, str) or not _OBJECT_ID.match(obj_id):
            raise WebhookMalformedError("YooKassa notification object has no valid id")

        try:
            if event in _PAYMENT_EVENTS:
                payment = await self._get("payments", obj_id)
                if payment is None:
                    raise WebhookAuthError(f"YooKassa does not know payment {obj_id}")
                return vetted(self._payment_event(payment, claimed=event))
            if event == "refund.succeeded":
                refund = await self._get("refunds", obj_id)
                if refund is None:
                    raise WebhookAuthError(f"YooKassa does not know refund {obj_id}")
                return vetted(await self._refund_event(refund))
        except ProviderRejectedError as exc:
            # Our re-check was refused (e.g. 401 after a key rotation): the notification may
            # be genuine, so ask YooKassa to deliver it again later instead of dropping it.
            raise ProviderUnavailableError(f"cannot re-check YooKassa {event}: {exc}") from exc
        return vetted(self._ignored(f"{event[:40]}:{obj_id}"))

    # -- internals: events ---------------------------------------------------------------
    def _ignored(self, key: str) -> PaymentEvent:
        return PaymentEvent(
            provider=self._name, kind=EventKind.IGNORED, dedupe_key=f"ignored:{key}"
        )

    def _payment_event(self, obj: Mapping[str, Any], *, claimed: str) -> PaymentEvent:
        payment = self._provider_payment(obj)
        api_status = obj.get("status")
        if api_status == "succeeded":
            kind = EventKind.PAYMENT_SUCCEEDED
            occurred = _parse_time(obj.get("captured_at")) or _parse_time(obj.get("created_at"))
        elif api_status == "canceled":
            kind = (
                EventKind.PAYMENT_EXPIRED
                if payment.status is ProviderStatus.EXPIRED
                else EventKind.PAYMENT_CANCELED
            )
            occurred = _parse_time(obj.get("created_at"))
        else:
            # pending (the body claimed more than the API confirms) or waiting_for_capture.
            return self._ignored(f"{claimed}:{payment.external_id}:{api_status}")
        return PaymentEvent(
            provider=self._name,
            kind=kind,
            dedupe_key=payment.external_id,
            external_id=payment.external_id,
            payment_ref=payment.payment_ref,
            amount=payment.amount,
            saved_method_id=payment.saved_method_id,
            occurred_at=occurred,
        )

    async def _refund_event(self, refund: Mapping[str, Any]) -> PaymentEvent:
        refund_id = str(refund.get("id"))
        if refund.get("status") != "succeeded":
            return self._ignored(f"refund.succeeded:{refund_id}:{refund.get('status')}")
        payment_id = refund.get("payment_id")
        if not isinstance(payment_id, str) or not _OBJECT_ID.match(payment_id):
            _bad_response(f"refund {refund_id} without a payment_id")
        # The refund object does not carry the payment's metadata; our payment id lives there.
        payment = await self._get("payments", payment_id)
        payment_ref = _payment_ref(payment) if payment is not None else None
        return PaymentEvent(
            provider=self._name,
            kind=EventKind.REFUND_SUCCEEDED,
            dedupe_key=refund_id,
            external_id=payment_id,
            payment_ref=payment_ref,
            amount=_money(refund.get("amount")),
            occurred_at=_parse_time(refund.get("created_at")),
        )

    def _provider_payment(self, obj: Mapping[str, Any]) -> ProviderPayment:
        external_id = obj.get("id")
        if not isinstance(external_id, str) or not external_id:
            _bad_response("payment without an id")
        amount = _money(obj.get("amount"))
        api_status = obj.get("status")
        status: ProviderStatus
        if api_status in ("pending", "waiting_for_capture"):
            status = ProviderStatus.PENDING
        elif api_status == "succeeded":
            status = ProviderStatus.SUCCEEDED
            refunded = obj.get("refunded_amount")
            if refunded is not None and _money(refunded) >= amount:
                status = ProviderStatus.REFUNDED
        elif api_status == "canceled":
            details = obj.get("cancellation_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            status = (
                ProviderStatus.EXPIRED
                if reason == "expired_on_confirmation"
                else ProviderStatus.CANCELED
            )
        else:
            _bad_response(f"payment {external_id} has unknown status {api_status!r}")
        method = obj.get("payment_method")
        saved_id: str | None = None
        if isinstance(method, dict) and method.get("saved") is True:
            mid = method.get("id")
            saved_id = mid if isinstance(mid, str) and mid else None
        return ProviderPayment(
            external_id=external_id,
            status=status,
            amount=amount,
            payment_ref=_payment_ref(obj),
            saved_method_id=saved_id,
        )

    # -- internals: requests -------------------------------------------------------------
    def _check_amount(self, amount: Money) -> None:
        s = self._settings
        if amount.currency != s.currency:
            raise ProviderRejectedError(
                f"YooKassa is configured for {s.currency.code}, not {amount.currency.code}"
            )
        check_amount("YooKassa", amount, s.min_amount, s.max_amount)

    def _receipt(self, request: CheckoutRequest) -> dict[str, Any]:
        if not request.email:
            raise ProviderRejectedError("a 54-FZ receipt needs the customer's email")
        receipt: dict[str, Any] = {
            "customer": {"email": request.email},
            "items": [
                {
                    "description": request.description[:_DESCRIPTION_MAX],
                    "quantity": "1.00",
                    "amount": _amount_json(request.amount),
                    "vat_code": self._settings.vat_code,
                    "payment_mode": self._settings.receipt_payment_mode,
                    "payment_subject": self._settings.receipt_payment_subject,
                }
            ],
        }
        if self._settings.tax_system_code is not None:
            receipt["tax_system_code"] = self._settings.tax_system_code
        return receipt

    @staticmethod
    def _check_echo(obj: Mapping[str, Any], request: CheckoutRequest) -> None:
        # An idempotency-key collision would hand us someone else's payment: refuse it.
        if not isinstance(obj.get("id"), str):
            _bad_response("payment without an id")
        ref = _payment_ref(obj)
        if ref != request.payment_id:
            raise ProviderRejectedError(
                f"YooKassa returned payment {obj.get('id')} for payment_id {ref!r}, "
                f"not {request.payment_id!r} (idempotence key reused?)"
            )

    async def _get(self, kind: str, object_id: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", f"/{kind}/{object_id}")
        except _NotFoundError:
            return None

    async def _request(
        self, method: str, path: str, *, body: Any = None, key: str | None = None
    ) -> dict[str, Any]:
        s = self._settings
        # Serialised once so that every attempt sends byte-identical data with the same key.
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        return await call_with_retries(
            lambda: self._once(method, path, data, key),
            attempts=s.max_attempts,
            wait_initial=s.retry_wait_initial,
            wait_max=s.retry_wait_max,
            unavailable=lambda exc: f"YooKassa {method} {path}: {exc}",
        )

    async def _once(
        self, method: str, path: str, data: bytes | None, key: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotence-Key"] = key
        status, raw = await read_response(
            self._client().request(method, self._base + path, data=data, headers=headers)
        )
        if status == 200:
            try:
                doc = json.loads(raw, parse_float=Decimal)
            except ValueError:
                raise TransientError("HTTP 200 with a body that is not JSON") from None
            if not isinstance(doc, dict):
                raise TransientError("HTTP 200 with a JSON body that is not an object")
            return doc
        # 202 is YooKassa's "still processing, ask again with the same key".
        if status == 202 or is_transient_status(status):
            raise TransientError(f"HTTP {status}")
        if status == 404 and method == "GET":
            raise _NotFoundError(path)
        err: dict[str, Any] = {}
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                err = parsed
        except ValueError:
            pass
        raise YooKassaRejectedError(
            status, err.get("code"), err.get("description"), err.get("parameter")
        )


def _amount_json(amount: Money) -> dict[str, str]:
    return {"value": amount.format(), "currency": amount.currency.code}


def _money(value: object) -> Money:
    if not isinstance(value, dict):
        _bad_response("amount is missing")
    raw = value.get("value")
    cur = value.get("currency")
    if isinstance(raw, bool) or not isinstance(raw, str | Decimal | int):
        _bad_response(f"amount {value!r} is malformed")
    if not isinstance(cur, str):
        _bad_response(f"amount {value!r} is malformed")
    try:
        return Money.parse(raw, cur)
    except DomainError as exc:
        _bad_response(f"amount {value!r}: {exc}")


def _payment_ref(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        ref = meta.get("payment_id")
        if isinstance(ref, str) and ref:
            return ref
    return None


def _bad_response(what: str) -> NoReturn:
    """YooKassa's API answered something we cannot read: treat it as its failure."""
    raise ProviderUnavailableError(f"unexpected YooKassa response: {what}")
