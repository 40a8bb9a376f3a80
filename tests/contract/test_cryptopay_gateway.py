"""CryptoPayGateway against the local Crypto Pay emulator, over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import attrs
import pytest

from tests.contract.helpers import Receiver
from tests.contract.helpers import json_webhook as webhook
from vpnshop.adapters.payments.cryptopay import (
    CryptoPayConfigError,
    CryptoPayGateway,
    CryptoPaySettings,
)
from vpnshop.domain.money import RUB, USD, Money
from vpnshop.ports.payments import (
    AmountOutOfRangeError,
    CheckoutRequest,
    EventKind,
    PaymentGateway,
    ProviderRejectedError,
    ProviderStatus,
    ProviderUnavailableError,
    WebhookAuthError,
    WebhookMalformedError,
)
from vpnshop.testing.cryptopay import CryptoPayEmulator

# Fields aiocryptopay 0.4.8's Invoice model (aiocryptopay/models/invoice.py) requires.
AIOCRYPTOPAY_REQUIRED = {
    "invoice_id", "status", "hash", "amount", "bot_invoice_url", "web_app_invoice_url",
    "mini_app_invoice_url", "created_at", "allow_comments", "allow_anonymous", "currency_type",
}  # fmt: skip


def checkout_request(
    amount: Money = Money(19900, RUB), key: str = "idem-1", payment_id: str = "pay-1"
) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        order_id="order-1",
        amount=amount,
        description="VPN 1 month",
        idempotency_key=key,
        customer_telegram_id=777,
    )


def settings_for(emu: CryptoPayEmulator, **overrides: Any) -> CryptoPaySettings:
    base = CryptoPaySettings(
        token=emu.token,
        base_url=emu.base_url,
        timeout=2.0,
        retry_wait=0.001,
        min_amount=Money(1000, RUB),
        max_amount=Money(10_000_000, RUB),
    )
    return attrs.evolve(base, **overrides)


@pytest.fixture
async def emu() -> AsyncIterator[CryptoPayEmulator]:
    async with CryptoPayEmulator(min_amount=Decimal("1"), max_amount=Decimal("1000000")) as e:
        yield e


@pytest.fixture
async def gateway(emu: CryptoPayEmulator) -> AsyncIterator[CryptoPayGateway]:
    async with CryptoPayGateway(settings_for(emu)) as gw:
        yield gw


def test_gateway_satisfies_the_port(gateway: CryptoPayGateway) -> None:
    """The gateway structurally implements PaymentGateway and declares no refunds."""
    port: PaymentGateway = gateway
    assert port.name == "cryptopay"
    assert port.currency == RUB
    assert port.supports_refund is False
    assert port.webhook_reply.status == 200


# -- configuration ----------------------------------------------------------------------------
def test_missing_token_is_a_config_error() -> None:
    """Constructing the gateway without a token fails and names the setting."""
    with pytest.raises(CryptoPayConfigError) as info:
        CryptoPayGateway(CryptoPaySettings(token=""))
    assert info.value.setting == "token"


def test_token_is_not_in_repr() -> None:
    """The settings record never prints the API token."""
    assert "s3cret-token" not in repr(CryptoPaySettings(token="s3cret-token"))


def test_unknown_fiat_is_a_config_error() -> None:
    """A fiat vpnshop cannot represent is refused at start-up, not at payment time."""
    with pytest.raises(CryptoPayConfigError) as info:
        CryptoPayGateway(CryptoPaySettings(token="t", fiat="BYN"))
    assert info.value.setting == "fiat"


# -- createInvoice ----------------------------------------------------------------------------
async def test_create_sends_a_fiat_invoice_with_our_payment_id(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """createInvoice is a POST of a RUB fiat invoice with a 2-decimal amount and our payload."""
    checkout = await gateway.create_payment(checkout_request(Money(19950, RUB)))
    assert checkout.external_id is not None
    invoice = emu.invoices[int(checkout.external_id)]
    assert invoice["currency_type"] == "fiat"
    assert invoice["fiat"] == "RUB"
    assert invoice["amount"] == "199.50"
    assert invoice["payload"] == "pay-1"
    assert invoice["description"] == "VPN 1 month"
    assert "expiration_date" in invoice
    assert checkout.url == invoice["bot_invoice_url"]
    assert checkout.expires_at is not None
    assert checkout.expires_at.tzinfo is not None
    assert emu.calls == [("POST", "createInvoice")]


async def test_accepted_assets_are_sent(emu: CryptoPayEmulator) -> None:
    """Configured accepted assets reach the invoice."""
    async with CryptoPayGateway(settings_for(emu, accepted_assets=("USDT", "TON"))) as gw:
        checkout = await gw.create_payment(checkout_request())
    assert checkout.external_id is not None
    assert emu.invoices[int(checkout.external_id)]["accepted_assets"] == ["USDT", "TON"]


async def test_same_idempotency_key_returns_the_same_invoice(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """Repeating a create with the same key returns the first invoice and creates no other."""
    first = await gateway.create_payment(checkout_request(key="k"))
    second = await gateway.create_payment(checkout_request(key="k"))
    third = await gateway.create_payment(checkout_request(key="other"))
    assert first == second
    assert third.external_id != first.external_id
    assert len(emu.invoices) == 2


async def test_amount_outside_configured_limits_is_refused_locally(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """Amounts below min or above max raise AmountOutOfRangeError without an API call."""
    with pytest.raises(AmountOutOfRangeError):
        await gateway.create_payment(checkout_request(Money(999, RUB)))
    with pytest.raises(AmountOutOfRangeError):
        await gateway.create_payment(checkout_request(Money(10_000_001, RUB)))
    assert gateway.min_amount == Money(1000, RUB)
    assert emu.calls == []


async def test_provider_amount_limit_maps_to_out_of_range(emu: CryptoPayEmulator) -> None:
    """The provider's own AMOUNT_TOO_SMALL answer becomes AmountOutOfRangeError."""
    emu.min_amount = Decimal("500")
    async with CryptoPayGateway(settings_for(emu, min_amount=None)) as gw:
        with pytest.raises(AmountOutOfRangeError):
            await gw.create_payment(checkout_request(Money(10000, RUB)))
    assert len(emu.calls) == 1


async def test_other_currency_is_rejected(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """A checkout in a currency other than the configured fiat is refused."""
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(checkout_request(Money(1000, USD)))
    assert emu.calls == []


async def test_wrong_token_is_rejected_not_retried(emu: CryptoPayEmulator) -> None:
    """A 401 UNAUTHORIZED is a ProviderRejectedError after exactly one call."""
    async with CryptoPayGateway(settings_for(emu, token="1:wrong")) as gw:
        with pytest.raises(ProviderRejectedError, match="UNAUTHORIZED"):
            await gw.create_payment(checkout_request())
    assert len(emu.calls) == 1


# -- retries ----------------------------------------------------------------------------------
async def test_5xx_and_429_are_retried_with_the_same_request(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """Transient failures are retried and the invoice is created once with the same payload."""
    emu.fail_next(1, 502)
    emu.fail_next(1, 429)
    checkout = await gateway.create_payment(checkout_request())
    assert [c[1] for c in emu.calls] == ["createInvoice"] * 3
    assert len(emu.invoices) == 1
    assert checkout.external_id is not None
    assert emu.invoices[int(checkout.external_id)]["payload"] == "pay-1"


async def test_persistent_5xx_becomes_provider_unavailable(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """After the configured attempts a 5xx surfaces as ProviderUnavailableError."""
    emu.fail_next(10, 503)
    with pytest.raises(ProviderUnavailableError):
        await gateway.create_payment(checkout_request())
    assert len(emu.calls) == 3


async def test_4xx_is_not_retried(emu: CryptoPayEmulator, gateway: CryptoPayGateway) -> None:
    """A 400 answer is final: one call, ProviderRejectedError."""
    emu.fail_next(1, 400)
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(checkout_request())
    assert len(emu.calls) == 1


async def test_unreachable_host_is_provider_unavailable() -> None:
    """A refused connection is retried and then reported as ProviderUnavailableError."""
    async with CryptoPayEmulator() as dead:
        url = dead.base_url
    settings = CryptoPaySettings(token="t", base_url=url, retry_wait=0.001, attempts=2)
    async with CryptoPayGateway(settings) as gw:
        with pytest.raises(ProviderUnavailableError):
            await gw.create_payment(checkout_request())


async def test_slow_provider_times_out(emu: CryptoPayEmulator) -> None:
    """An answer slower than the timeout counts as unavailable."""
    emu.latency = 0.3
    async with CryptoPayGateway(settings_for(emu, timeout=0.05, attempts=2)) as gw:
        with pytest.raises(ProviderUnavailableError):
            await gw.create_payment(checkout_request())


# -- getInvoices ------------------------------------------------------------------------------
async def test_fetch_maps_statuses_and_the_fiat_amount(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """fetch_payment reports active, paid and expired invoices with the signed fiat amount."""
    a = await gateway.create_payment(checkout_request(Money(15000, RUB), key="a", payment_id="A"))
    b = await gateway.create_payment(checkout_request(Money(25000, RUB), key="b", payment_id="B"))
    assert a.external_id
    assert b.external_id
    pending = await gateway.fetch_payment("A", a.external_id)
    assert pending is not None
    assert pending.status is ProviderStatus.PENDING
    emu.mark_paid(a.external_id)
    emu.expire(b.external_id)
    paid = await gateway.fetch_payment("A", a.external_id)
    expired = await gateway.fetch_payment("B", b.external_id)
    assert paid is not None
    assert expired is not None
    assert (paid.status, paid.amount, paid.payment_ref) == (
        ProviderStatus.SUCCEEDED,
        Money(15000, RUB),
        "A",
    )
    assert expired.status is ProviderStatus.EXPIRED
    assert ("POST", "getInvoices") in emu.calls


async def test_fetch_unknown_or_missing_id_is_none(gateway: CryptoPayGateway) -> None:
    """An invoice the provider does not know, or no invoice id at all, gives None."""
    assert await gateway.fetch_payment("x", "999999") is None
    assert await gateway.fetch_payment("x", None) is None


async def test_refund_is_unsupported(gateway: CryptoPayGateway) -> None:
    """Crypto Pay has no refund API, so refund raises ProviderRejectedError."""
    with pytest.raises(ProviderRejectedError):
        await gateway.refund("1", Money(100, RUB), "r-1")


# -- emulator wire format ---------------------------------------------------------------------
async def test_emulator_speaks_get_and_form_like_the_real_api(emu: CryptoPayEmulator) -> None:
    """GET query and form POST both work, invoices carry aiocryptopay's fields, 401 is enveloped."""
    headers = {"Crypto-Pay-API-Token": emu.token}
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"{emu.base_url}/api/createInvoice",
            params={"asset": "TON", "amount": "1.5", "payload": "p"},
            headers=headers,
        ) as r:
            created = await r.json()
        async with s.post(
            f"{emu.base_url}/api/deleteInvoice",
            data={"invoice_id": str(created["result"]["invoice_id"])},
            headers=headers,
        ) as r:
            deleted = await r.json()
        async with s.get(f"{emu.base_url}/api/getMe", headers={"Crypto-Pay-API-Token": "x"}) as r:
            assert r.status == 401
            unauthorized = await r.json()
    assert created["ok"] is True
    assert set(created["result"]) >= AIOCRYPTOPAY_REQUIRED
    assert deleted == {"ok": True, "result": True}
    assert emu.invoices == {}
    assert unauthorized == {"ok": False, "error": {"code": 401, "name": "UNAUTHORIZED"}}


# -- webhooks: genuine ------------------------------------------------------------------------
async def test_paid_invoice_delivers_a_signed_update(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, receiver: Receiver
) -> None:
    """Paying delivers an invoice_paid update that parses to PAYMENT_SUCCEEDED with our ref."""
    checkout = await gateway.create_payment(checkout_request(Money(19900, RUB)))
    assert checkout.external_id is not None
    delivery = await emu.pay(checkout.external_id)
    assert delivery is not None
    assert delivery.status == 200
    [event] = receiver.events
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.provider == "cryptopay"
    assert event.payment_ref == "pay-1"
    assert event.external_id == checkout.external_id
    assert event.dedupe_key == checkout.external_id
    assert event.amount == Money(19900, RUB)
    assert event.occurred_at is not None
    assert event.occurred_at.tzinfo is not None


async def test_redelivery_keeps_the_dedupe_key(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """Two deliveries of one payment have different update_ids but the same dedupe key."""
    checkout = await gateway.create_payment(checkout_request())
    assert checkout.external_id is not None
    emu.mark_paid(checkout.external_id)
    first = await gateway.parse_webhook(webhook(*emu.notification_body(checkout.external_id)))
    second = await gateway.parse_webhook(webhook(*emu.notification_body(checkout.external_id)))
    assert first.dedupe_key == second.dedupe_key == checkout.external_id


async def test_other_update_types_are_ignored(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """An authentic update that is not invoice_paid is IGNORED and carries no amount."""
    checkout = await gateway.create_payment(checkout_request())
    assert checkout.external_id is not None
    body, headers = emu.notification_body(checkout.external_id, update_type="invoice_expired")
    event = await gateway.parse_webhook(webhook(body, headers))
    assert event.kind is EventKind.IGNORED
    assert event.amount is None
    assert event.payment_ref is None


async def test_invoice_not_created_by_us_is_ignored(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway
) -> None:
    """A paid crypto invoice without our payload (made by hand in the bot) is IGNORED."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{emu.base_url}/api/createInvoice",
            json={"asset": "USDT", "amount": "5"},
            headers={"Crypto-Pay-API-Token": emu.token},
        ) as r,
    ):
        invoice_id = (await r.json())["result"]["invoice_id"]
    emu.mark_paid(invoice_id)
    event = await gateway.parse_webhook(webhook(*emu.notification_body(invoice_id)))
    assert event.kind is EventKind.IGNORED


# -- webhooks: hostile ------------------------------------------------------------------------
@pytest.fixture
async def paid_invoice(emu: CryptoPayEmulator, gateway: CryptoPayGateway) -> str:
    checkout = await gateway.create_payment(checkout_request(Money(19900, RUB)))
    assert checkout.external_id is not None
    emu.mark_paid(checkout.external_id)
    return str(checkout.external_id)


async def test_missing_signature_is_rejected(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """A body without the signature header raises WebhookAuthError."""
    body, _ = emu.notification_body(paid_invoice)
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, {"Content-Type": "application/json"}))


async def test_signature_from_another_app_is_rejected(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """A body signed with another app's token raises WebhookAuthError."""
    body, headers = emu.notification_body(paid_invoice, token="999:AnotherApp")
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, headers))


async def test_hmac_keyed_with_the_raw_token_is_rejected(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """Keying the HMAC with the token itself (a common mistake) does not authenticate."""
    body, headers = emu.notification_body(paid_invoice)
    headers["crypto-pay-api-signature"] = hmac.new(
        emu.token.encode(), body, hashlib.sha256
    ).hexdigest()
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, headers))


async def test_tampered_amount_breaks_the_signature(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """Changing the amount after signing raises WebhookAuthError."""
    body, headers = emu.notification_body(paid_invoice, tamper={"amount": "1.00"})
    assert b'"amount":"1.00"' in body
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, headers))


async def test_reserialised_body_fails_so_raw_bytes_are_used(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """The same JSON with different whitespace fails: the HMAC covers the raw bytes."""
    body, headers = emu.notification_body(paid_invoice)
    pretty = json.dumps(json.loads(body), indent=2).encode()
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(pretty, headers))
    event = await gateway.parse_webhook(webhook(body, headers))
    assert event.kind is EventKind.PAYMENT_SUCCEEDED


async def test_signature_header_is_case_insensitive(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """Header name and hex digits are matched case-insensitively."""
    body, headers = emu.notification_body(paid_invoice)
    sig = headers.pop("crypto-pay-api-signature")
    event = await gateway.parse_webhook(webhook(body, {"Crypto-Pay-Api-Signature": sig.upper()}))
    assert event.amount == Money(19900, RUB)


async def test_non_ascii_signature_is_an_auth_error(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, paid_invoice: str
) -> None:
    """A garbage non-ASCII signature raises WebhookAuthError, not a TypeError."""
    body, _ = emu.notification_body(paid_invoice)
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, {"crypto-pay-api-signature": "é" * 64}))


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"update_type":"invoice_paid","payload":"x"}',
        b'{"update_type":"invoice_paid","payload":{"invoice_id":"7","status":"paid"}}',
        b'{"update_type":"invoice_paid","payload":{"invoice_id":7,"status":"active",'
        b'"currency_type":"fiat","fiat":"RUB","amount":"1.00","payload":"p"}}',
        b'{"update_type":"invoice_paid","payload":{"invoice_id":7,"status":"paid",'
        b'"currency_type":"fiat","fiat":"RUB","amount":"1.001","payload":"p"}}',
    ],
)
async def test_signed_but_malformed_updates_are_malformed(
    emu: CryptoPayEmulator, gateway: CryptoPayGateway, body: bytes
) -> None:
    """Correctly signed bodies that are not a valid invoice_paid raise WebhookMalformedError."""
    headers = {"crypto-pay-api-signature": emu.sign(body)}
    with pytest.raises(WebhookMalformedError):
        await gateway.parse_webhook(webhook(body, headers))


async def test_forged_delivery_is_answered_401_and_not_recorded(
    emu: CryptoPayEmulator, receiver: Receiver, paid_invoice: str
) -> None:
    """A forged delivery over HTTP gets 401 and yields no event."""
    delivery = await emu.deliver(*emu.notification_body(paid_invoice, token="1:forger"))
    assert delivery.status == 401
    assert receiver.events == []
