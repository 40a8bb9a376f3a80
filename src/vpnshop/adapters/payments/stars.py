"""Telegram Stars (``XTR``) as a payment gateway, over the Bot API without aiogram.

Paying: :meth:`StarsGateway.create_payment` builds the invoice from the stored order as
:class:`~vpnshop.ports.payments.CheckoutRequest` carries it: currency ``XTR``, exactly one
price (the order's amount in whole Stars), an empty provider token, and a payload that
names our payment (``vs1:<payment id>``), never a price. By default it sends the invoice
to the customer's chat (``sendInvoice``; the checkout has no URL); with
``mode="link"`` it makes an invoice link (``createInvoiceLink``) for a URL button.

Confirming: Telegram does not call a webhook of ours; it sends the bot updates. The bot
shell, which received the update from Telegram (long polling with our token, or its
webhook after checking the secret header), hands the Update JSON (or the Message JSON) to
:meth:`parse_webhook` as the request body; authenticity is the shell's to vouch for. A
``successful_payment`` becomes PAYMENT_SUCCEEDED and a ``refunded_payment``
REFUND_SUCCEEDED, each keyed on ``telegram_payment_charge_id`` (the external id, so a
redelivered update or a second replica applies it once); anything else is IGNORED.
Checking a ``pre_checkout_query`` against the stored payment is a use case of the core;
:func:`payment_ref` reads the payment id out of its payload.

Refunding: ``refundStarPayment`` needs the paying user's id, which the port's
``refund(external_id, ...)`` does not carry, so the gateway is given ``charge_owner``, a
lookup from a charge id to the paying Telegram user and the amount (the composition root
wires :func:`store_charge_owner`). Without it, refunds are not supported. Telegram refunds a
charge whole, so a partial refund is refused rather than recorded as partial. A charge the
store holds no payment for (a second payment of a paid order) is given back by
:meth:`StarsGateway.return_charge`, which is told the payer.
:meth:`fetch_payment` returns None: the Bot API has no lookup of a payment by payload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal

import attrs

from vpnshop.adapters.payments._common import GatewayLifetime, check_amount
from vpnshop.adapters.telegram.client import BotApiClient, BotApiError, BotApiUnavailableError
from vpnshop.domain.money import XTR, Currency, Money
from vpnshop.ports.payments import (
    Checkout,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    ProviderPayment,
    ProviderRejectedError,
    ProviderUnavailableError,
    RefundResult,
    WebhookMalformedError,
    WebhookReply,
    WebhookRequest,
)
from vpnshop.ports.storage import UnitOfWorkFactory

log = logging.getLogger(__name__)

PROVIDER: Final = "stars"
PAYLOAD_PREFIX: Final = "vs1:"
MAX_TITLE = 32
MAX_DESCRIPTION = 255
MAX_PAYLOAD_BYTES = 128


@attrs.frozen
class StarsCharge:
    """Who paid a charge and how much, as our store recorded it."""

    telegram_id: int
    amount: Money


ChargeOwner = Callable[[str], Awaitable[StarsCharge | None]]


def store_charge_owner(uow: UnitOfWorkFactory) -> ChargeOwner:
    """The :data:`ChargeOwner` that reads our stored Stars payment and its customer."""

    async def owner(charge_id: str) -> StarsCharge | None:
        async with uow() as tx:
            payment = await tx.payments.by_external_id(PROVIDER, charge_id)
            if payment is None:
                return None
            customer = await tx.customers.get(payment.customer_id)
        if customer is None:
            return None
        return StarsCharge(customer.telegram_id, payment.amount)

    return owner


def payload_for(payment_id: str) -> str:
    """The invoice payload naming our payment *payment_id*."""
    payload = f"{PAYLOAD_PREFIX}{payment_id}"
    if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise ProviderRejectedError(f"stars: payment id {payment_id!r} is too long for a payload")
    return payload


def payment_ref(payload: str) -> str | None:
    """Our payment id named by an invoice payload, or None when the payload is not ours."""
    if not payload.startswith(PAYLOAD_PREFIX) or len(payload) == len(PAYLOAD_PREFIX):
        return None
    return payload.removeprefix(PAYLOAD_PREFIX)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.frozen
class StarsSettings:
    """``mode``: send the invoice to the chat, or make a link for a URL button."""

    mode: Literal["invoice", "link"] = "invoice"
    min_stars: int = 1
    max_stars: int = 10000
    title: str = ""  # invoice title; empty: the order's description


class StarsGateway(GatewayLifetime):
    """:class:`vpnshop.ports.payments.PaymentGateway` for Telegram Stars."""

    def __init__(
        self,
        client: BotApiClient,
        settings: StarsSettings | None = None,
        *,
        charge_owner: ChargeOwner | None = None,
    ) -> None:
        self._client = client
        self._settings = settings or StarsSettings()
        self._charge_owner = charge_owner

    # -- PaymentGateway properties --------------------------------------------------------
    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def currency(self) -> Currency:
        return XTR

    @property
    def min_amount(self) -> Money | None:
        return Money(self._settings.min_stars, XTR)

    @property
    def max_amount(self) -> Money | None:
        return Money(self._settings.max_stars, XTR)

    @property
    def supports_refund(self) -> bool:
        return self._charge_owner is not None

    @property
    def webhook_reply(self) -> WebhookReply:
        return WebhookReply()

    # -- paying ---------------------------------------------------------------------------
    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        if request.amount.currency != XTR:
            raise ProviderRejectedError(
                f"stars: takes XTR only, not {request.amount.currency.code}"
            )
        check_amount(PROVIDER, request.amount, self.min_amount, self.max_amount)
        payload = payload_for(request.payment_id)
        title = _clip(self._settings.title or request.description or "VPN", MAX_TITLE)
        params: dict[str, Any] = {
            "title": title,
            "description": _clip(request.description or title, MAX_DESCRIPTION),
            "payload": payload,
            "currency": XTR.code,
            "prices": [{"label": title, "amount": request.amount.minor}],
            "provider_token": "",
        }
        if self._settings.mode == "link":
            link = await self._call("createInvoiceLink", params)
            return Checkout(external_id=None, url=str(link), invoice_payload=payload)
        await self._call("sendInvoice", {"chat_id": request.customer_telegram_id, **params})
        return Checkout(external_id=None, url=None, invoice_payload=payload)

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        return None  # the Bot API has no lookup by payload; updates are the only news

    # -- confirming -----------------------------------------------------------------------
    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise WebhookMalformedError("stars: the update is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookMalformedError("stars: the update is not a JSON object")
        message = body.get("message", body)  # an Update, or the Message itself
        if not isinstance(message, dict):
            return self._ignored(body)
        occurred = message.get("date")
        occurred_at = datetime.fromtimestamp(occurred, UTC) if isinstance(occurred, int) else None
        sender = message.get("from") or message.get("chat") or {}
        telegram_id = sender.get("id") if isinstance(sender, dict) else None
        for field, kind, prefix in (
            ("successful_payment", EventKind.PAYMENT_SUCCEEDED, "stars:"),
            ("refunded_payment", EventKind.REFUND_SUCCEEDED, "stars:refund:"),
        ):
            paid = message.get(field)
            if paid is None:
                continue
            if not isinstance(paid, dict):
                raise WebhookMalformedError(f"stars: {field} is not an object")
            charge_id, amount, ref = self._payment_fields(field, paid)
            return PaymentEvent(
                provider=PROVIDER,
                kind=kind,
                dedupe_key=f"{prefix}{charge_id}",
                external_id=charge_id,
                payment_ref=ref,
                amount=amount,
                telegram_id=telegram_id if isinstance(telegram_id, int) else None,
                occurred_at=occurred_at,
            )
        return self._ignored(body)

    def _ignored(self, body: dict[str, Any]) -> PaymentEvent:
        key = body.get("update_id", body.get("message_id", "?"))
        return PaymentEvent(provider=PROVIDER, kind=EventKind.IGNORED, dedupe_key=f"stars:u{key}")

    @staticmethod
    def _payment_fields(field: str, paid: dict[str, Any]) -> tuple[str, Money, str]:
        charge_id = paid.get("telegram_payment_charge_id")
        if not isinstance(charge_id, str) or not charge_id:
            raise WebhookMalformedError(f"stars: {field} has no telegram_payment_charge_id")
        if paid.get("currency") != XTR.code:
            raise WebhookMalformedError(f"stars: {field} in {paid.get('currency')!r}, not XTR")
        total = paid.get("total_amount")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise WebhookMalformedError(f"stars: {field} has no positive total_amount")
        ref = payment_ref(str(paid.get("invoice_payload") or ""))
        if ref is None:
            raise WebhookMalformedError(f"stars: {field} payload is not one of ours")
        return charge_id, Money(total, XTR), ref

    # -- refunding ------------------------------------------------------------------------
    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        if self._charge_owner is None:
            raise ProviderRejectedError("stars: refunds need the charge owner lookup")
        charge = await self._charge_owner(external_id)
        if charge is None:
            raise ProviderRejectedError(f"stars: no customer paid charge {external_id}")
        if amount != charge.amount:
            raise ProviderRejectedError(
                f"stars: Telegram refunds charge {external_id} whole ({charge.amount}), "
                f"not {amount}"
            )
        await self.return_charge(external_id, charge.telegram_id)
        return RefundResult(external_id=external_id, succeeded=True)

    async def return_charge(self, external_id: str, payer_telegram_id: int) -> None:
        """``refundStarPayment`` for the whole charge (also a charge the store holds no
        payment for: :class:`vpnshop.ports.payments.ChargeReturner`)."""
        params = {"user_id": payer_telegram_id, "telegram_payment_charge_id": external_id}
        try:
            await self._call("refundStarPayment", params)
        except ProviderRejectedError as e:
            if "CHARGE_ALREADY_REFUNDED" not in str(e):
                raise
            log.info("stars charge %s was refunded already", external_id)  # a retry

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return await self._client.call(method, params)
        except BotApiUnavailableError as e:
            raise ProviderUnavailableError(f"stars: {e}") from None
        except BotApiError as e:
            if e.error_code == 429 or e.error_code >= 500 or e.error_code in (401, 404):
                raise ProviderUnavailableError(f"stars: {e}") from None
            raise ProviderRejectedError(f"stars: {e}") from None
