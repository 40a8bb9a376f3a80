"""FreeKassa payment gateway: orders through API v1, confirmation by the MD5 notification.

Creating a payment
    ``POST {api_url}/orders/create`` with JSON ``shopId, nonce, paymentId`` (our payment
    id), ``i`` (payment system, 44 = SBP by default), ``email, ip, amount, currency`` and
    ``signature = hex(HMAC-SHA256(api_key, "|".join(values sorted by key)))``. The answer
    carries the pay URL (``location``) and FreeKassa's ``orderId``. The amount is sent as a
    2-decimal string so that the signed text is exactly what we mean (a JSON float would be
    re-printed by the other side).

    Every request needs a ``nonce`` greater than any FreeKassa has seen for the shop; see
    :class:`NonceSource` for how that holds across replicas. Retries (connection errors,
    timeouts, 429, 5xx, and a refused nonce) re-sign the request with a fresh nonce; the
    ``paymentId`` stays the same. FreeKassa has no idempotency header: whether a second
    ``orders/create`` with the same ``paymentId`` returns the first order is UNVERIFIED
    (the emulator assumes it does).

Notifications
    FreeKassa POSTs a form (configure the notification method as POST: a GET notification
    has no body). :meth:`FreeKassaGateway.parse_webhook` checks, in order: the source
    address against the allowlist (default: ``FREEKASSA_NOTIFICATION_IPS``, UNVERIFIED and
    configurable), the form (parsed from the raw body with ``parse_qs``; each of
    ``MERCHANT_ID, AMOUNT, MERCHANT_ORDER_ID, SIGN, intid`` exactly once), ``MERCHANT_ID``
    equal to ours, and ``SIGN == md5("MERCHANT_ID:AMOUNT:secret2:MERCHANT_ORDER_ID")``
    compared case-insensitively in constant time over the RAW ``AMOUNT`` string (FreeKassa
    may print "100" or "100.00"; re-formatting would break the check). The event's amount
    is that same signed string parsed with ``Money.parse``. Answer: 200 ``YES``.

    ``dedupe_key`` and ``external_id`` are FreeKassa's ``intid``; ``payment_ref`` is
    ``MERCHANT_ORDER_ID``, which is our payment id (the ``paymentId`` we created the order
    with).

No refund API: ``supports_refund`` is False and :meth:`FreeKassaGateway.refund` raises
``ProviderRejectedError``. Currency: RUB.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, NoReturn
from urllib.parse import parse_qs

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
from vpnshop.adapters.payments._input import form_value, shown, text_field, vetted
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

PROVIDER: Final = "freekassa"
FREEKASSA_API_URL: Final = "https://api.freekassa.com/v1"

# The list bedolaga's FreeKassa integration uses; check it against FreeKassa's docs before
# relying on it, hence configurable.
FREEKASSA_NOTIFICATION_IPS: Final[tuple[str, ...]] = (
    "168.119.157.136",
    "168.119.60.227",
    "178.154.197.79",
    "51.250.54.238",
)

# Order statuses in ``POST /orders`` answers: 0 new, 1 paid, 6 refunded, 8 error, 9 canceled.
_ORDER_STATUS: Final[dict[int, ProviderStatus]] = {
    0: ProviderStatus.PENDING,
    1: ProviderStatus.SUCCEEDED,
    6: ProviderStatus.REFUNDED,
    8: ProviderStatus.CANCELED,
    9: ProviderStatus.CANCELED,
}

_REQUIRED_FIELDS: Final = ("MERCHANT_ID", "AMOUNT", "MERCHANT_ORDER_ID")


class FreeKassaConfigError(ValueError):
    """FreeKassa is enabled but a required setting is missing or invalid."""

    def __init__(self, setting: str, reason: str = "is not set") -> None:
        super().__init__(f"FreeKassa is enabled but {setting} {reason}")
        self.setting = setting


class FreeKassaRejectedError(ProviderRejectedError):
    """FreeKassa answered ``{"type":"error","message":...}``."""

    def __init__(self, http_status: int, message: str | None) -> None:
        super().__init__(f"FreeKassa HTTP {http_status}: {message}")
        self.http_status = http_status
        self.provider_message = message


class NonceSource:
    """Strictly increasing nonces for FreeKassa's API.

    A nonce is ``max(wall clock in microseconds, previous nonce + 1)``:

    * within a process the counter part makes it strictly increasing even when two requests
      fall in the same microsecond or the wall clock steps back (NTP);
    * across restarts and across replicas the wall-clock part keeps every process in one
      common, increasing sequence (a pure counter, as some bots use, restarts low and is
      refused after a restart). Replicas with synchronised clocks hand out nonces in the
      order they send them; the rare loser of a same-microsecond race, or a replica whose
      clock lags, gets a "nonce" refusal and the gateway retries with a fresh, larger one
      (bounded by ``max_attempts``).

    Microseconds since 1970 stay below 2**53, so the value survives a JSON number round
    trip through a double. One source is shared by every gateway in the process.
    """

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._last = 0
        self._lock = threading.Lock()  # the scheduler may sign from a worker thread

    def next(self) -> int:
        with self._lock:
            self._last = max(self._clock_ns() // 1000, self._last + 1)
            return self._last


_PROCESS_NONCES: Final = NonceSource()


def sign_api_request(params: Mapping[str, Any], api_key: str) -> str:
    """FreeKassa API v1 signature: HMAC-SHA256 over the values sorted by key, joined '|'."""
    text = "|".join(str(params[k]) for k in sorted(params) if k != "signature")
    return hmac.new(api_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def notification_sign(merchant_id: str, amount: str, secret_word_2: str, order_id: str) -> str:
    """The notification ``SIGN``: md5 of ``MERCHANT_ID:AMOUNT:secret2:MERCHANT_ORDER_ID``."""
    text = f"{merchant_id}:{amount}:{secret_word_2}:{order_id}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@attrs.frozen
class FreeKassaSettings:
    """How to reach one FreeKassa shop. Secrets stay out of ``repr``.

    ``customer_ip`` fills the API's required ``ip`` field: a Telegram bot never sees the
    payer's address, so use the server's public address (FreeKassa refuses 127.0.0.1 for
    SBP). ``email_domain`` builds ``<telegram id>@<domain>`` when the customer gave no
    email (the API requires one). ``payment_system_id`` is the ``i`` field (44 = SBP).
    """

    shop_id: str = attrs.field(default="", converter=str)
    api_key: str = attrs.field(default="", repr=False)
    secret_word_2: str = attrs.field(default="", repr=False)
    customer_ip: str = ""
    api_url: str = FREEKASSA_API_URL
    payment_system_id: int = 44
    email_domain: str = "telegram.org"
    allowed_ips: tuple[str, ...] = attrs.field(
        default=FREEKASSA_NOTIFICATION_IPS, converter=str_tuple
    )
    min_amount: Money | None = None
    max_amount: Money | None = None
    timeout_seconds: float = 15.0
    max_attempts: int = 3
    retry_wait_initial: float = 0.5
    retry_wait_max: float = 5.0


class FreeKassaGateway(HttpSessionOwner):
    """:class:`~vpnshop.ports.payments.PaymentGateway` for FreeKassa.

    Owns one ``aiohttp.ClientSession`` (created on first use, closed by :meth:`aclose` or
    ``async with``). Raises :class:`FreeKassaConfigError` when the shop id, API key, secret
    word 2 or customer ip is missing.
    """

    def __init__(
        self,
        settings: FreeKassaSettings,
        *,
        name: str = PROVIDER,
        nonces: NonceSource | None = None,
    ) -> None:
        shop_id = settings.shop_id.strip()
        if not shop_id:
            raise FreeKassaConfigError("shop_id")
        if not shop_id.isdigit():
            raise FreeKassaConfigError("shop_id", "is not a number")
        if not settings.api_key.strip():
            raise FreeKassaConfigError("api_key")
        if not settings.secret_word_2.strip():
            raise FreeKassaConfigError("secret_word_2")
        if not settings.customer_ip.strip():
            raise FreeKassaConfigError("customer_ip")
        if settings.max_attempts < 1:
            raise FreeKassaConfigError("max_attempts", "must be at least 1")
        for limit_name in ("min_amount", "max_amount"):
            limit = getattr(settings, limit_name)
            if limit is not None and limit.currency != RUB:
                raise FreeKassaConfigError(limit_name, "is not in RUB")
        try:
            self._allowlist = IpAllowlist(settings.allowed_ips)
        except ValueError as exc:
            raise FreeKassaConfigError("allowed_ips", f"is invalid: {exc}") from None
        self._settings = settings
        self._shop_id = shop_id
        self._name = name
        self._nonces = nonces or _PROCESS_NONCES
        self._base = settings.api_url.rstrip("/")
        super().__init__(settings.timeout_seconds)

    # -- PaymentGateway properties -------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def currency(self) -> Currency:
        return RUB

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
        return WebhookReply(status=200, body="YES", content_type="text/plain")

    @property
    def allowlist(self) -> IpAllowlist:
        return self._allowlist

    # -- operations ----------------------------------------------------------------------
    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        """``POST /orders/create`` with ``paymentId`` = our payment id."""
        self._check_amount(request.amount)
        email = request.email or f"{request.customer_telegram_id}@{self._settings.email_domain}"
        params: dict[str, Any] = {
            "paymentId": request.payment_id,
            "i": self._settings.payment_system_id,
            "email": email,
            "ip": self._settings.customer_ip,
            "amount": request.amount.format(),
            "currency": RUB.code,
        }
        doc = await self._call("/orders/create", params)
        location = doc.get("location")
        order_id = doc.get("orderId")
        if not isinstance(location, str) or not location or order_id in (None, ""):
            _bad_response("orders/create answered without location or orderId")
        return Checkout(external_id=str(order_id), url=location)

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        """``POST /orders`` filtered by ``paymentId``; None when FreeKassa has no order."""
        doc = await self._call("/orders", {"paymentId": payment_ref})
        orders = doc.get("orders")
        if orders is None:
            return None
        if not isinstance(orders, list):
            _bad_response("orders is not a list")
        mine = [
            o
            for o in orders
            if isinstance(o, dict) and str(o.get("merchant_order_id")) == payment_ref
        ]
        if external_id is not None:
            exact = [o for o in mine if str(o.get("fk_order_id")) == external_id]
            mine = exact or mine
        if not mine:
            return None
        # Several orders for one payment id: the paid one is the one that matters.
        mine.sort(key=lambda o: o.get("status") != 1)
        return self._provider_payment(mine[0])

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        """FreeKassa has no refund API; refunds are done by hand in its dashboard."""
        raise ProviderRejectedError("FreeKassa has no refund API; refund it in the dashboard")

    # -- notifications -------------------------------------------------------------------
    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """Authenticate (address, merchant id, MD5 over the raw fields) and parse a
        FreeKassa notification into PAYMENT_SUCCEEDED."""
        if not self._allowlist.allows(request.remote_ip):
            raise WebhookAuthError(
                f"FreeKassa notification from {request.remote_ip!r}, outside the allowlist"
            )
        try:
            text = request.body.decode("utf-8")
            form = parse_qs(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:  # UnicodeDecodeError is a ValueError too
            raise WebhookMalformedError("FreeKassa notification is not a form") from None

        def one(name: str) -> str | None:
            # Two AMOUNTs: which one was signed? form_value refuses rather than guess.
            return form_value(form, name)

        sign = one("SIGN")
        if not sign:
            raise WebhookAuthError("FreeKassa notification without SIGN")
        merchant, amount_raw, order_id = (one(n) for n in _REQUIRED_FIELDS)
        if merchant is None or amount_raw is None or order_id is None:
            raise WebhookMalformedError(
                "FreeKassa notification needs MERCHANT_ID, AMOUNT and MERCHANT_ORDER_ID"
            )
        # Compared exactly, as sent: " 31337" is another merchant id, not ours.
        if merchant != self._shop_id:
            raise WebhookAuthError(f"FreeKassa notification for merchant {shown(merchant)}")
        expected = notification_sign(merchant, amount_raw, self._settings.secret_word_2, order_id)
        try:
            given = sign.strip().lower().encode("ascii")
        except UnicodeEncodeError:
            raise WebhookAuthError("FreeKassa notification SIGN is not hex") from None
        if not hmac.compare_digest(expected.encode("ascii"), given):
            raise WebhookAuthError("FreeKassa notification SIGN does not match")

        # Authentic from here on; what is left can only be malformed.
        intid = text_field(one("intid"), "FreeKassa intid")
        order_id = text_field(order_id, "FreeKassa MERCHANT_ORDER_ID")
        try:
            amount = Money.parse(amount_raw, RUB)
        except DomainError as exc:
            raise WebhookMalformedError(f"FreeKassa AMOUNT {shown(amount_raw)}: {exc}") from None
        if not amount.is_positive:
            raise WebhookMalformedError(f"FreeKassa AMOUNT {shown(amount_raw)} is not positive")
        return vetted(
            PaymentEvent(
                provider=self._name,
                kind=EventKind.PAYMENT_SUCCEEDED,
                dedupe_key=intid,
                external_id=intid,
                payment_ref=order_id,
                amount=amount,
            )
        )

    # -- internals -----------------------------------------------------------------------
    def _check_amount(self, amount: Money) -> None:
        s = self._settings
        if amount.currency != RUB:
            raise ProviderRejectedError(f"FreeKassa charges RUB, not {amount.currency.code}")
        check_amount("FreeKassa", amount, s.min_amount, s.max_amount)

    def _provider_payment(self, order: Mapping[str, Any]) -> ProviderPayment:
        status_code = order.get("status")
        if isinstance(status_code, str) and status_code.isdigit():
            status_code = int(status_code)
        status = _ORDER_STATUS.get(status_code) if type(status_code) is int else None
        if status is None:
            _bad_response(f"order status {status_code!r}")
        raw_amount = order.get("amount")
        if isinstance(raw_amount, bool) or not isinstance(raw_amount, str | int | Decimal):
            _bad_response(f"order amount {raw_amount!r}")
        try:
            amount = Money.parse(raw_amount, str(order.get("currency") or RUB.code))
        except DomainError as exc:
            _bad_response(f"order amount {raw_amount!r}: {exc}")
        return ProviderPayment(
            external_id=str(order.get("fk_order_id")),
            status=status,
            amount=amount,
            payment_ref=str(order.get("merchant_order_id")),
        )

    async def _call(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        s = self._settings
        # Retries (network, timeout, 429, 5xx, nonce refused) re-sign with a fresh nonce.
        return await call_with_retries(
            lambda: self._once(path, params),
            attempts=s.max_attempts,
            wait_initial=s.retry_wait_initial,
            wait_max=s.retry_wait_max,
            unavailable=lambda exc: f"FreeKassa {path}: {exc}",
        )

    async def _once(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        # A fresh nonce (and so a fresh signature) per attempt: a retried nonce is refused.
        body: dict[str, Any] = {"shopId": int(self._shop_id), "nonce": self._nonces.next()}
        body.update(params)
        body["signature"] = sign_api_request(body, self._settings.api_key)
        status, raw = await read_response(
            self._client().post(
                self._base + path,
                data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
        )
        if is_transient_status(status):
            raise TransientError(f"HTTP {status}")
        doc: Any = None
        try:
            doc = json.loads(raw, parse_float=Decimal)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            if status == 200:
                raise TransientError("HTTP 200 with a body that is not a JSON object")
            raise FreeKassaRejectedError(status, raw[:200].decode("utf-8", "replace"))
        if status == 200 and doc.get("type") == "success":
            return doc
        message = doc.get("message")
        message = message if isinstance(message, str) else str(doc.get("error") or doc)
        # UNVERIFIED wording: FreeKassa's refusal of a stale nonce mentions "nonce".
        if "nonce" in message.lower():
            raise TransientError(f"nonce refused: {message}")
        raise FreeKassaRejectedError(status, message)


def _bad_response(what: str) -> NoReturn:
    """FreeKassa's API answered something we cannot read: treat it as its failure."""
    raise ProviderUnavailableError(f"unexpected FreeKassa response: {what}")
