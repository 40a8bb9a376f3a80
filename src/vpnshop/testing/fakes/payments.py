"""A payment provider in memory, with signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import RUB, Currency, Money
from vpnshop.ports.payments import (
    Checkout,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    PaymentGateway,
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

SIGNATURE_HEADER = "X-Fake-Signature"


@attrs.define
class _FakeProviderPayment:
    request: CheckoutRequest
    checkout: Checkout
    status: ProviderStatus = ProviderStatus.PENDING
    refunded: int = 0


class FakeGateway:
    """A payment provider in memory.

    ``create_payment`` records the request and returns a checkout URL with an external id
    (idempotent on the request's idempotency key). ``event(...)`` builds PaymentEvents;
    ``webhook_request(event)`` turns one into a signed WebhookRequest that
    ``parse_webhook`` accepts (HMAC-SHA256 of the raw body with *secret* in the
    ``X-Fake-Signature`` header), for shell tests. Set ``unavailable = True`` to make calls
    raise ProviderUnavailableError.
    """

    def __init__(
        self,
        name: str = "fake",
        currency: Currency = RUB,
        *,
        secret: str = "fake-secret",  # noqa: S107 - a test double's key
        min_amount: Money | None = None,
        max_amount: Money | None = None,
        supports_refund: bool = True,
    ) -> None:
        self._name = name
        self._currency = currency
        self._secret = secret.encode()
        self._min_amount = min_amount
        self._max_amount = max_amount
        self._supports_refund = supports_refund
        self.requests: list[CheckoutRequest] = []
        self.refunds: list[tuple[str, Money, str]] = []
        self.payments: dict[str, _FakeProviderPayment] = {}  # by external id
        self._by_key: dict[str, str] = {}
        self._seq = itertools.count(1)
        self.unavailable = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def currency(self) -> Currency:
        return self._currency

    @property
    def min_amount(self) -> Money | None:
        return self._min_amount

    @property
    def max_amount(self) -> Money | None:
        return self._max_amount

    @property
    def supports_refund(self) -> bool:
        return self._supports_refund

    @property
    def webhook_reply(self) -> WebhookReply:
        return WebhookReply(status=200, body="OK")

    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        self._check_up()
        self.requests.append(request)
        known = self._by_key.get(request.idempotency_key)
        if known is not None:
            return self.payments[known].checkout
        external_id = f"{self._name}-{next(self._seq):06d}"
        checkout = Checkout(
            external_id=external_id, url=f"https://pay.example/{self._name}/{external_id}"
        )
        self.payments[external_id] = _FakeProviderPayment(request, checkout)
        self._by_key[request.idempotency_key] = external_id
        return checkout

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        self._check_up()
        found = self.payments.get(external_id) if external_id else None
        if found is None:
            found = next(
                (p for p in self.payments.values() if p.request.payment_id == payment_ref), None
            )
        if found is None or found.checkout.external_id is None:
            return None
        return ProviderPayment(
            external_id=found.checkout.external_id,
            status=found.status,
            amount=found.request.amount,
            payment_ref=found.request.payment_id,
        )

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        given = next(
            (v for k, v in request.headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None
        )
        if not given or not hmac.compare_digest(given, self.sign(request.body)):
            raise WebhookAuthError("bad or missing signature")
        try:
            data = json.loads(request.body)
            return _event_from_json(data)
        except (ValueError, KeyError, TypeError, DomainError) as exc:
            raise WebhookMalformedError(f"cannot parse the notification: {exc}") from exc

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        self._check_up()
        if not self._supports_refund:
            raise ProviderRejectedError(f"{self._name} does not refund")
        found = self.payments.get(external_id)
        if found is None or found.status is not ProviderStatus.SUCCEEDED:
            raise ProviderRejectedError(f"payment {external_id} cannot be refunded")
        self.refunds.append((external_id, amount, idempotency_key))
        found.refunded += amount.minor
        if found.refunded >= found.request.amount.minor:
            found.status = ProviderStatus.REFUNDED
        return RefundResult(external_id=external_id, succeeded=True)

    # -- test helpers ---------------------------------------------------------------
    def set_status(self, external_id: str, status: ProviderStatus) -> None:
        """Act as the payer/provider: what ``fetch_payment`` reports from now on."""
        self.payments[external_id].status = status

    def event(
        self,
        kind: EventKind = EventKind.PAYMENT_SUCCEEDED,
        *,
        payment_ref: str | None = None,
        external_id: str | None = None,
        amount: Money | None = None,
        dedupe_key: str | None = None,
        **extra: Any,
    ) -> PaymentEvent:
        """A PaymentEvent from this provider. With only *payment_ref* or *external_id* of a
        created payment, the other one and the amount are filled in from it."""
        found = self.payments.get(external_id) if external_id else None
        if found is None and payment_ref is not None:
            found = next(
                (p for p in self.payments.values() if p.request.payment_id == payment_ref), None
            )
        if found is not None:
            payment_ref = payment_ref or found.request.payment_id
            external_id = external_id or found.checkout.external_id
            amount = amount or found.request.amount
        return PaymentEvent(
            provider=self._name,
            kind=kind,
            dedupe_key=dedupe_key or f"{kind.value}:{external_id or payment_ref}",
            external_id=external_id,
            payment_ref=payment_ref,
            amount=amount,
            **extra,
        )

    def sign(self, body: bytes) -> str:
        return hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def webhook_request(
        self, event: PaymentEvent, *, remote_ip: str = "127.0.0.1", signature: str | None = None
    ) -> WebhookRequest:
        """The signed HTTP notification for *event* (or with a forged *signature*)."""
        body = json.dumps(_event_to_json(event), sort_keys=True).encode()
        sig = self.sign(body) if signature is None else signature
        return WebhookRequest(
            body=body,
            headers={SIGNATURE_HEADER: sig},
            remote_ip=remote_ip,
            content_type="application/json",
        )

    def _check_up(self) -> None:
        if self.unavailable:
            raise ProviderUnavailableError(f"{self._name} is unavailable")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _event_to_json(event: PaymentEvent) -> dict[str, object]:
    return {
        "provider": event.provider,
        "kind": event.kind.value,
        "dedupe_key": event.dedupe_key,
        "external_id": event.external_id,
        "payment_ref": event.payment_ref,
        "amount": None if event.amount is None else event.amount.format(),
        "currency": None if event.amount is None else event.amount.currency.code,
        "telegram_id": event.telegram_id,
        "product": event.product,
        "expires_at": _iso(event.expires_at),
        "saved_method_id": event.saved_method_id,
        "occurred_at": _iso(event.occurred_at),
    }


def _event_from_json(data: Mapping[str, Any]) -> PaymentEvent:
    def when(key: str) -> datetime | None:
        value = data.get(key)
        return None if value is None else datetime.fromisoformat(value)

    amount = None
    if data.get("amount") is not None:
        amount = Money.parse(str(data["amount"]), str(data["currency"]))
    return PaymentEvent(
        provider=str(data["provider"]),
        kind=EventKind(data["kind"]),
        dedupe_key=str(data["dedupe_key"]),
        external_id=data.get("external_id"),
        payment_ref=data.get("payment_ref"),
        amount=amount,
        telegram_id=data.get("telegram_id"),
        product=data.get("product"),
        expires_at=when("expires_at"),
        saved_method_id=data.get("saved_method_id"),
        occurred_at=when("occurred_at"),
    )


if TYPE_CHECKING:
    _gateway: PaymentGateway = FakeGateway()
