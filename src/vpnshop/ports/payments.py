"""The payment gateway port: one adapter per provider (YooKassa, CryptoPay, ...).

A gateway creates payments at its provider and turns the provider's notifications into
authenticated :class:`PaymentEvent` values. It never touches the database: confirming,
crediting and fulfilling is the core's job (``vpnshop.services``), done exactly once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import Currency, Money


class PaymentProviderError(DomainError):
    code = "provider_error"


class ProviderUnavailableError(PaymentProviderError):
    """The provider could not be reached or failed on its side; retry later."""

    code = "provider_unavailable"


class ProviderRejectedError(PaymentProviderError):
    """The provider refused the request (4xx); retrying the same request will not help."""

    code = "provider_rejected"


class WebhookAuthError(PaymentProviderError):
    """A notification failed authentication (signature, source address, merchant id)."""

    code = "webhook_unauthenticated"


class WebhookMalformedError(PaymentProviderError):
    """A notification is authentic-looking but cannot be parsed."""

    code = "webhook_malformed"


class AmountOutOfRangeError(PaymentProviderError):
    """The amount is below the provider's minimum or above its maximum."""

    code = "amount_out_of_range"


@attrs.frozen
class CheckoutRequest:
    """What a gateway needs to create a payment at its provider."""

    payment_id: str  # ours; also the provider-side order reference
    order_id: str
    amount: Money
    description: str
    idempotency_key: str
    customer_telegram_id: int
    return_url: str | None = None
    email: str | None = None
    save_payment_method: bool = False
    plan_code: str | None = None


@attrs.frozen
class Checkout:
    """What the customer must open to pay. For Telegram Stars ``url`` is None and the bot
    sends an invoice carrying ``invoice_payload`` instead."""

    external_id: str | None
    url: str | None = None
    invoice_payload: str | None = None
    expires_at: datetime | None = None


class ProviderStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REFUNDED = "refunded"


@attrs.frozen
class ProviderPayment:
    """A payment as the provider's API reports it (trusted: fetched by us)."""

    external_id: str
    status: ProviderStatus
    amount: Money
    payment_ref: str | None = None  # our payment id as the provider echoes it back
    saved_method_id: str | None = None


class EventKind(enum.StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_CANCELED = "payment_canceled"
    PAYMENT_EXPIRED = "payment_expired"
    REFUND_SUCCEEDED = "refund_succeeded"
    SUBSCRIPTION_STARTED = "subscription_started"  # provider-run subscriptions (Tribute)
    SUBSCRIPTION_RENEWED = "subscription_renewed"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    IGNORED = "ignored"  # authentic but irrelevant: answer 2xx and do nothing


@attrs.frozen
class PaymentEvent:
    """An authenticated notification from a provider.

    ``dedupe_key`` identifies the event across redeliveries. For payment events
    ``payment_ref`` (our payment id) and/or ``external_id`` find the stored payment, and
    ``amount`` is what the provider says was paid: the core checks it against the order.
    Provider-run subscriptions carry ``telegram_id`` and ``product`` instead.
    """

    provider: str
    kind: EventKind
    dedupe_key: str
    external_id: str | None = None
    payment_ref: str | None = None
    amount: Money | None = None
    telegram_id: int | None = None
    product: str | None = None
    expires_at: datetime | None = None
    saved_method_id: str | None = None
    occurred_at: datetime | None = None


@attrs.frozen(hash=False)
class WebhookRequest:
    """A provider's HTTP notification as received, before any parsing."""

    body: bytes
    headers: Mapping[str, str]  # case-insensitive lookups are the adapter's job
    remote_ip: str
    content_type: str = ""


@attrs.frozen
class WebhookReply:
    """The answer a provider expects once the event is safely stored."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


@attrs.frozen
class RefundResult:
    external_id: str
    succeeded: bool


class PaymentGateway(Protocol):
    """One payment provider. ``name`` is its stable id in URLs and the database."""

    @property
    def name(self) -> str: ...

    @property
    def currency(self) -> Currency:
        """The currency this provider is charged in (as configured)."""
        ...

    @property
    def min_amount(self) -> Money | None: ...

    @property
    def max_amount(self) -> Money | None: ...

    @property
    def supports_refund(self) -> bool:
        """True when :meth:`refund` returns money through the provider's API."""
        ...

    @property
    def webhook_reply(self) -> WebhookReply:
        """What to answer the provider after an event was processed (or was a duplicate)."""
        ...

    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        """Create the payment at the provider. Idempotent on ``request.idempotency_key``
        where the provider supports it. Raises ProviderUnavailableError (retry with the
        same key) or ProviderRejectedError."""
        ...

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        """The provider's view of a payment (for re-checks of pending payments), or None."""
        ...

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """Authenticate and parse a notification. Raises WebhookAuthError or
        WebhookMalformedError; never returns an unauthenticated event. May call the
        provider's API (YooKassa: the notification is re-fetched and only that is trusted).
        """
        ...

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        """Refund through the provider. Raises ProviderRejectedError when unsupported."""
        ...


@runtime_checkable
class ChargeReturner(Protocol):
    """A gateway that can give back a charge the shop holds no payment for, knowing only
    the charge and who paid it: Telegram Stars, where two devices can pay one invoice at
    once (both pre-checkouts are answered while the order is still open) and the second
    charge finds the order paid."""

    @property
    def name(self) -> str: ...

    async def return_charge(self, external_id: str, payer_telegram_id: int) -> None:
        """Give the whole charge back to the payer. Idempotent: a charge given back already
        is success. Raises ProviderRejectedError (it cannot be given back) or
        ProviderUnavailableError (retry later)."""
        ...
