"""Tribute (tribute.tg) subscriptions as a payment gateway.

Tribute runs the subscription itself: the customer opens one of the creator's product
links, pays inside Tribute, and Tribute renews and charges on its own schedule. There is
no "create payment" API, so :meth:`TributeGateway.create_payment` only hands out the
configured link for the plan (``external_id`` None), and :meth:`fetch_payment` returns
None (no status API is used; Tribute's retries over about 24 hours are the safety net).
Refunds are not available through the API.

What moves money in vpnshop is only a signed webhook. Header ``trbt-signature`` is the
lowercase hex HMAC-SHA256 of the RAW body keyed with the API key, compared in constant
time. The envelope is ``{"name", "created_at", "sent_at", "payload"}``:

* ``new_subscription``       -> SUBSCRIPTION_STARTED
* ``renewed_subscription``   -> SUBSCRIPTION_RENEWED
* ``cancelled_subscription`` -> SUBSCRIPTION_CANCELLED
* anything else (donations, digital and physical products) -> IGNORED.

The event carries ``telegram_id`` (``payload.telegram_user_id``), ``product`` (our plan code,
mapped from ``subscription_id`` or from the ``startapp`` code of ``web_app_link``, as
configured; an unmapped product is IGNORED with a warning, never extended), ``amount``
(``payload.amount``, already in minor units, currency upper-cased) and ``expires_at``.

Dedupe keys: ``tribute:{subscription_id}:{telegram_user_id}:{expires_at}`` for started and
renewed subscriptions (a renewal has a new ``expires_at``, a redelivery the same). The
Telegram user is part of the key because ``subscription_id`` appears to identify the
creator's subscription product, shared by every subscriber (docs example:
``"subscription_id": 1646, "subscription_name": "Premium"``). Cancellations use
``tribute:cancelled:...`` so they never collide with the renewal they follow.

UNVERIFIED (configurable, defaults are conservative):

* whether Tribute reads any extra query parameter appended to a product link. Links look
  like ``https://t.me/tribute/app?startapp=s<code>`` where ``startapp`` already names the
  product, so by default nothing is appended; ``customer_param`` appends
  ``<param>=<telegram id>`` for link formats that carry one (bedolaga appends ``user_id``
  to donation links). The customer is identified by ``telegram_user_id`` in the webhook
  in any case;
* whether ``amount`` is the gross price paid or the creator's share (the docs example has
  ``price: 1000, amount: 700``). The event reports ``amount``, the field Tribute's webhook
  docs name; the core decides how strictly to compare it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from vpnshop.adapters.payments._common import (
    GatewayLifetime,
    hmac_sha256_hex,
    verify_hmac_header,
)
from vpnshop.adapters.payments._input import (
    int_field,
    load_object,
    parse_utc,
    shown,
    telegram_id_field,
    vetted,
)
from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import MAX_MINOR, Currency, Money, currency
from vpnshop.ports.payments import (
    Checkout,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    ProviderPayment,
    ProviderRejectedError,
    RefundResult,
    WebhookMalformedError,
    WebhookReply,
    WebhookRequest,
)

log = logging.getLogger(__name__)

PROVIDER: Final = "tribute"
SIGNATURE_HEADER: Final = "trbt-signature"

_KINDS: Final[Mapping[str, EventKind]] = {
    "new_subscription": EventKind.SUBSCRIPTION_STARTED,
    "renewed_subscription": EventKind.SUBSCRIPTION_RENEWED,
    "cancelled_subscription": EventKind.SUBSCRIPTION_CANCELLED,
}


class TributeConfigError(ValueError):
    """The Tribute gateway is enabled but a required setting is missing or invalid."""

    def __init__(self, setting: str, why: str = "is required") -> None:
        super().__init__(f"Tribute: setting {setting!r} {why}")
        self.setting = setting


class ProductMatch(enum.StrEnum):
    """Which webhook field identifies the product."""

    SUBSCRIPTION_ID = "subscription_id"
    WEB_APP_LINK = "web_app_link"  # the ``startapp`` code of payload.web_app_link


@attrs.frozen
class TributeProduct:
    """One Tribute subscription product sold as one of our plans.

    ``key`` is Tribute's ``subscription_id`` (as text) or the ``startapp`` code of its
    ``web_app_link`` (e.g. ``sNMT``), depending on :class:`ProductMatch`.
    """

    key: str
    plan_code: str
    link: str


@attrs.frozen
class TributeSettings:
    api_key: str = attrs.field(repr=False)
    products: tuple[TributeProduct, ...] = ()
    match_by: ProductMatch = ProductMatch.SUBSCRIPTION_ID
    currency: str = "RUB"
    customer_param: str | None = None  # UNVERIFIED: see the module docstring


def signature(api_key: str, body: bytes) -> str:
    """The ``trbt-signature`` Tribute sends for *body*."""
    return hmac_sha256_hex(api_key.encode(), body)


def _startapp_code(link: str) -> str | None:
    for name, value in parse_qsl(urlsplit(link).query):
        if name == "startapp":
            return value
    return None


def _utc(raw: object, field: str) -> datetime:
    parsed = parse_utc(raw)  # Tribute speaks UTC; never keep a naive datetime
    if parsed is None:
        raise WebhookMalformedError(f"{field} is missing or not an ISO date: {shown(raw)}")
    return parsed


class TributeGateway(GatewayLifetime):
    """:class:`vpnshop.ports.payments.PaymentGateway` for Tribute subscriptions."""

    def __init__(self, settings: TributeSettings) -> None:
        if not settings.api_key or not settings.api_key.strip():
            raise TributeConfigError("api_key")
        if not settings.products:
            raise TributeConfigError("products", "needs at least one product")
        try:
            self._currency = currency(settings.currency)
        except DomainError:
            raise TributeConfigError("currency", f"is unknown: {settings.currency!r}") from None
        self._by_key: dict[str, TributeProduct] = {}
        self._by_plan: dict[str, TributeProduct] = {}
        for product in settings.products:
            if not product.key or not product.plan_code or not product.link:
                raise TributeConfigError("products", "need key, plan_code and link each")
            if product.key in self._by_key or product.plan_code in self._by_plan:
                raise TributeConfigError("products", f"repeat {product.key}/{product.plan_code}")
            self._by_key[product.key] = product
            self._by_plan[product.plan_code] = product
        self._settings = settings
        self._key = settings.api_key.encode()

    # -- lifetime: inherited; no HTTP client, because Tribute is only ever the caller ----

    # -- PaymentGateway properties --------------------------------------------------------
    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def currency(self) -> Currency:
        return self._currency

    @property
    def min_amount(self) -> Money | None:
        return None  # Tribute prices its own products

    @property
    def max_amount(self) -> Money | None:
        return None

    @property
    def supports_refund(self) -> bool:
        return False

    @property
    def webhook_reply(self) -> WebhookReply:
        return WebhookReply(status=200, body="ok")

    # -- payments -------------------------------------------------------------------------
    def link_for(self, plan_code: str, telegram_id: int) -> str:
        """The product link a customer opens to subscribe to *plan_code*."""
        product = self._by_plan.get(plan_code)
        if product is None:
            raise ProviderRejectedError(f"no Tribute product is configured for plan {plan_code!r}")
        param = self._settings.customer_param
        if not param:
            return product.link
        parts = urlsplit(product.link)
        query = [*parse_qsl(parts.query, keep_blank_values=True), (param, str(telegram_id))]
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        """The configured product link for ``request.plan_code``; Tribute has no create API."""
        if request.plan_code is None:
            raise ProviderRejectedError("Tribute sells plans only: plan_code is required")
        return Checkout(
            external_id=None, url=self.link_for(request.plan_code, request.customer_telegram_id)
        )

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        """Always None: Tribute payments are known only from signed webhooks."""
        return None

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        raise ProviderRejectedError("Tribute refunds are made in the Tribute dashboard")

    # -- webhooks -------------------------------------------------------------------------
    def _authenticate(self, request: WebhookRequest) -> None:
        verify_hmac_header(request, SIGNATURE_HEADER, self._key)

    def _product(self, payload: Mapping[str, Any]) -> TributeProduct | None:
        if self._settings.match_by is ProductMatch.SUBSCRIPTION_ID:
            raw = payload.get("subscription_id")
            key = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else None
        else:
            link = payload.get("web_app_link")
            key = _startapp_code(link) if isinstance(link, str) else None
        return self._by_key.get(key) if key else None

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """Authenticate the raw body, then read the (now trusted) envelope."""
        self._authenticate(request)
        envelope = load_object(request.body, "envelope")
        name, payload = envelope.get("name"), envelope.get("payload")
        if not isinstance(name, str) or not isinstance(payload, dict):
            raise WebhookMalformedError("envelope needs a name and a payload object")
        created = envelope.get("created_at")
        occurred = _utc(created, "created_at") if isinstance(created, str) else None
        kind = _KINDS.get(name)
        if kind is None:
            return vetted(
                PaymentEvent(
                    provider=PROVIDER,
                    kind=EventKind.IGNORED,
                    dedupe_key=f"tribute:ignored:{name[:40]}:{str(created)[:40]}",
                    occurred_at=occurred,
                )
            )
        # Some integrations report ids as strings of digits; int_field accepts both.
        telegram_id = telegram_id_field(payload.get("telegram_user_id"))
        subscription_id = int_field(payload.get("subscription_id"), "subscription_id")
        expires_at = _utc(payload.get("expires_at"), "expires_at")
        amount = self._amount(payload, required=kind is not EventKind.SUBSCRIPTION_CANCELLED)
        stamp = expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        dedupe = f"tribute:{subscription_id}:{telegram_id}:{stamp}"
        if kind is EventKind.SUBSCRIPTION_CANCELLED:
            dedupe = f"tribute:cancelled:{subscription_id}:{telegram_id}:{stamp}"
        product = self._product(payload)
        if product is None:
            log.warning(
                "Tribute %s for an unmapped product (subscription_id=%s, web_app_link=%r) "
                "from Telegram user %s; ignored, nothing extended",
                name,
                subscription_id,
                shown(payload.get("web_app_link")),
                telegram_id,
            )
            return vetted(
                PaymentEvent(
                    provider=PROVIDER,
                    kind=EventKind.IGNORED,
                    dedupe_key=dedupe,
                    telegram_id=telegram_id,
                    occurred_at=occurred,
                )
            )
        return vetted(
            PaymentEvent(
                provider=PROVIDER,
                kind=kind,
                dedupe_key=dedupe,
                external_id=str(subscription_id),
                amount=amount,
                telegram_id=telegram_id,
                product=product.plan_code,
                expires_at=expires_at,
                occurred_at=occurred,
            )
        )

    @staticmethod
    def _amount(payload: Mapping[str, Any], *, required: bool) -> Money | None:
        raw, code = payload.get("amount"), payload.get("currency")
        if raw is None and not required:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise WebhookMalformedError("amount must be a non-negative integer of minor units")
        minor = int_field(raw, "amount", low=0, high=MAX_MINOR)
        if not isinstance(code, str):
            raise WebhookMalformedError("currency is missing")
        try:
            return Money(minor, currency(code))
        except DomainError as exc:
            raise WebhookMalformedError(f"currency {shown(code)}: {exc}") from None
