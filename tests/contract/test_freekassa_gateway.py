"""FreeKassaGateway against the FreeKassa emulator, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
import pytest

from tests.contract.helpers import Receiver, checkout
from vpnshop.adapters.payments.freekassa import (
    FREEKASSA_NOTIFICATION_IPS,
    FreeKassaConfigError,
    FreeKassaGateway,
    FreeKassaRejectedError,
    FreeKassaSettings,
    NonceSource,
)
from vpnshop.domain.money import RUB, USD, Money
from vpnshop.ports.payments import (
    AmountOutOfRangeError,
    EventKind,
    PaymentGateway,
    ProviderRejectedError,
    ProviderStatus,
    ProviderUnavailableError,
    WebhookAuthError,
    WebhookMalformedError,
    WebhookRequest,
)
from vpnshop.testing.freekassa import FreeKassaEmulator


def settings_for(emu: FreeKassaEmulator, **overrides: Any) -> FreeKassaSettings:
    base = FreeKassaSettings(
        shop_id=str(emu.shop_id),
        api_key=emu.api_key,
        secret_word_2=emu.secret_word_2,
        customer_ip="203.0.113.10",
        api_url=emu.api_url,
        allowed_ips=("127.0.0.1",),
        timeout_seconds=2.0,
        max_attempts=3,
        retry_wait_initial=0.01,
        retry_wait_max=0.02,
    )
    return attrs.evolve(base, **overrides)


def webhook(body: bytes, ip: str = "127.0.0.1") -> WebhookRequest:
    return WebhookRequest(
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        remote_ip=ip,
        content_type="application/x-www-form-urlencoded",
    )


@pytest.fixture
async def emu() -> AsyncIterator[FreeKassaEmulator]:
    async with FreeKassaEmulator() as emulator:
        yield emulator


@pytest.fixture
async def gateway(emu: FreeKassaEmulator) -> AsyncIterator[FreeKassaGateway]:
    async with FreeKassaGateway(settings_for(emu)) as gw:
        yield gw


# -- configuration ----------------------------------------------------------------------


def test_gateway_satisfies_the_port(gateway: FreeKassaGateway) -> None:
    """The adapter is a PaymentGateway in RUB, without refunds, answering 200 "YES"."""
    port: PaymentGateway = gateway
    assert port.name == "freekassa"
    assert port.currency == RUB
    assert port.supports_refund is False
    assert (port.webhook_reply.status, port.webhook_reply.body) == (200, "YES")


@pytest.mark.parametrize("missing", ["shop_id", "api_key", "secret_word_2", "customer_ip"])
def test_missing_setting_is_a_config_error(missing: str) -> None:
    """A gateway without a required setting refuses to exist, naming the setting."""
    full = FreeKassaSettings(
        shop_id="1", api_key="k", secret_word_2="s2", customer_ip="203.0.113.10"
    )
    with pytest.raises(FreeKassaConfigError) as info:
        FreeKassaGateway(attrs.evolve(full, **{missing: ""}))  # type: ignore[arg-type]
    assert info.value.setting == missing


def test_secrets_are_not_in_repr() -> None:
    """Neither the API key nor secret word 2 appears in the settings' repr."""
    settings = FreeKassaSettings(shop_id="1", api_key="api-key-xyz", secret_word_2="word-two")
    assert "api-key-xyz" not in repr(settings)
    assert "word-two" not in repr(settings)


def test_default_allowlist_is_the_documented_list() -> None:
    """By default the four FreeKassa addresses pass and nothing else does."""
    gw = FreeKassaGateway(
        FreeKassaSettings(shop_id="1", api_key="k", secret_word_2="s", customer_ip="1.2.3.4")
    )
    assert all(gw.allowlist.allows(ip) for ip in FREEKASSA_NOTIFICATION_IPS)
    assert not gw.allowlist.allows("127.0.0.1")
    assert not gw.allowlist.allows("138.201.88.124")


# -- nonces -----------------------------------------------------------------------------


def test_nonce_is_strictly_increasing_with_a_frozen_or_backward_clock() -> None:
    """Same microsecond or a clock stepping back still yields strictly increasing nonces."""
    ticks = iter([5_000_000, 5_000_000, 5_000_000, 1_000_000, 9_000_000])
    source = NonceSource(lambda: next(ticks))
    nonces = [source.next() for _ in range(5)]
    assert nonces == [5000, 5001, 5002, 5003, 9000]


def test_nonce_follows_wall_clock_across_processes() -> None:
    """A source started later (another replica, or after a restart) continues above."""
    first = NonceSource()
    a = [first.next() for _ in range(1000)]
    b = NonceSource().next()
    assert a == sorted(set(a))
    assert b > a[0]
    assert b < 2**53  # survives a JSON double


# -- create -----------------------------------------------------------------------------


async def test_create_sends_signed_order(emu: FreeKassaEmulator, gateway: FreeKassaGateway) -> None:
    """orders/create carries shopId, nonce, our paymentId, a 2-decimal amount and an HMAC."""
    result = await gateway.create_payment(checkout(amount="99.5"))
    [call] = emu.calls("POST /v1/orders/create")
    body = call.json()
    assert body["shopId"] == emu.shop_id
    assert body["paymentId"] == "pay-1"
    assert body["amount"] == "99.50"
    assert body["currency"] == "RUB"
    assert body["i"] == 44
    assert body["email"] == "42@telegram.org"
    assert body["ip"] == "203.0.113.10"
    text = "|".join(str(body[k]) for k in sorted(body) if k != "signature")
    expected = hmac.new(emu.api_key.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert body["signature"] == expected
    order = emu.order("pay-1")
    assert result.external_id == str(order.order_id)
    assert result.url == f"{emu.base_url}/pay/{order.order_hash}"


async def test_customer_email_is_used(emu: FreeKassaEmulator, gateway: FreeKassaGateway) -> None:
    """A customer's own email replaces the placeholder."""
    await gateway.create_payment(checkout(email="u@example.com"))
    assert emu.calls("POST /v1/orders/create")[0].json()["email"] == "u@example.com"


async def test_consecutive_calls_use_increasing_nonces(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """Every API call carries a larger nonce than the one before."""
    for n in range(1, 6):
        await gateway.create_payment(checkout(n))
        await gateway.fetch_payment(f"pay-{n}", None)
    nonces = [r.json()["nonce"] for r in emu.requests]
    assert len(nonces) == 10
    assert all(a < b for a, b in itertools.pairwise(nonces))


async def test_emulator_refuses_replayed_and_lower_nonce(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """Replaying a signed request, or a lower nonce, is refused as the real API would."""
    await gateway.create_payment(checkout())
    replay = emu.calls("POST /v1/orders/create")[0].json()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emu.api_url}/orders/create", json=replay) as resp:
            assert resp.status == 400
            assert "nonce" in (await resp.json())["message"].lower()
        lower = {**replay, "nonce": replay["nonce"] - 1}
        lower["signature"] = hmac.new(
            emu.api_key.encode(),
            "|".join(str(lower[k]) for k in sorted(lower) if k != "signature").encode(),
            hashlib.sha256,
        ).hexdigest()
        async with session.post(f"{emu.api_url}/orders/create", json=lower) as resp:
            assert resp.status == 400


async def test_refused_nonce_is_retried_with_a_fresh_one(emu: FreeKassaEmulator) -> None:
    """When another replica got ahead, the gateway re-signs with larger nonces until accepted."""
    source = NonceSource(lambda: 7_000_000_000)  # a frozen clock: 7_000_000, then +1...
    emu.last_nonce = 7_000_001  # FreeKassa already saw the next two of ours
    async with FreeKassaGateway(settings_for(emu), nonces=source) as gw:
        result = await gw.create_payment(checkout())
    nonces = [r.json()["nonce"] for r in emu.calls("POST /v1/orders/create")]
    assert nonces == [7_000_000, 7_000_001, 7_000_002]
    assert result.external_id == str(emu.order("pay-1").order_id)


async def test_wrong_api_key_is_rejected_once(emu: FreeKassaEmulator) -> None:
    """A bad signature is a 401 rejection and is not retried."""
    async with FreeKassaGateway(settings_for(emu, api_key="wrong")) as gw:
        with pytest.raises(FreeKassaRejectedError) as info:
            await gw.create_payment(checkout())
    assert info.value.http_status == 401
    assert len(emu.calls("POST /v1/orders/create")) == 1
    assert emu.orders == {}


async def test_5xx_is_retried_with_new_nonce(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """Two 502s then success: three calls, each with its own nonce, one order."""
    emu.fail_next(2, 502, route="POST /v1/orders/create")
    await gateway.create_payment(checkout())
    calls = emu.calls("POST /v1/orders/create")
    assert len(calls) == 3
    assert len({c.json()["nonce"] for c in calls}) == 3
    assert len(emu.orders) == 1


async def test_lost_response_finds_the_same_order(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """A 500 after the order was made: the retry with the same paymentId gets that order."""
    emu.fail_next(1, 500, route="POST /v1/orders/create", after_processing=True)
    result = await gateway.create_payment(checkout())
    assert len(emu.orders) == 1
    assert result.external_id == str(emu.order("pay-1").order_id)


async def test_persistent_5xx_is_unavailable(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """After max_attempts failures the gateway raises ProviderUnavailableError."""
    emu.fail_next(10, 500)
    with pytest.raises(ProviderUnavailableError):
        await gateway.create_payment(checkout())
    assert len(emu.calls("POST /v1/orders/create")) == 3


async def test_4xx_is_not_retried(emu: FreeKassaEmulator, gateway: FreeKassaGateway) -> None:
    """A 400 that is not about the nonce is raised after one call."""
    emu.fail_next(1, 400)
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(checkout())
    assert len(emu.calls("POST /v1/orders/create")) == 1


async def test_amount_limits_and_currency(emu: FreeKassaEmulator) -> None:
    """Out-of-range amounts and non-RUB money are refused without calling FreeKassa."""
    settings = settings_for(emu, min_amount=Money(1000, RUB), max_amount=Money(50000, RUB))
    async with FreeKassaGateway(settings) as gw:
        with pytest.raises(AmountOutOfRangeError):
            await gw.create_payment(checkout(amount="9.99"))
        with pytest.raises(AmountOutOfRangeError):
            await gw.create_payment(checkout(amount="500.01"))
        with pytest.raises(ProviderRejectedError):
            await gw.create_payment(attrs.evolve(checkout(), amount=Money(1000, USD)))
        await gw.create_payment(checkout(amount="500.00"))
    assert len(emu.requests) == 1


# -- fetch and refund -------------------------------------------------------------------


async def test_fetch_reports_order_state(emu: FreeKassaEmulator, gateway: FreeKassaGateway) -> None:
    """fetch_payment reads /orders by paymentId: pending, then paid with the exact amount."""
    created = await gateway.create_payment(checkout(amount="99.90"))
    pending = await gateway.fetch_payment("pay-1", created.external_id)
    assert pending is not None
    assert pending.status is ProviderStatus.PENDING
    await emu.pay("pay-1", notify=False)
    paid = await gateway.fetch_payment("pay-1", None)
    assert paid is not None
    assert paid.status is ProviderStatus.SUCCEEDED
    assert paid.amount == Money(9990, RUB)
    assert paid.payment_ref == "pay-1"
    assert paid.external_id == created.external_id
    assert emu.calls("POST /v1/orders")[0].json()["paymentId"] == "pay-1"


async def test_fetch_canceled_and_unknown(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """A canceled order reads CANCELED; an unknown payment id reads None."""
    await gateway.create_payment(checkout())
    emu.cancel("pay-1")
    canceled = await gateway.fetch_payment("pay-1", None)
    assert canceled is not None
    assert canceled.status is ProviderStatus.CANCELED
    assert await gateway.fetch_payment("pay-404", None) is None


async def test_refund_is_unsupported(gateway: FreeKassaGateway) -> None:
    """refund raises ProviderRejectedError: FreeKassa has no refund API."""
    with pytest.raises(ProviderRejectedError):
        await gateway.refund("123", Money(100, RUB), "refund-1")


# -- notifications ----------------------------------------------------------------------


async def test_genuine_notification(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway, receiver: Receiver
) -> None:
    """A real delivery is answered "YES" and becomes PAYMENT_SUCCEEDED keyed by intid."""
    created = await gateway.create_payment(checkout(amount="150.00"))
    delivery = await emu.pay("pay-1")
    assert delivery is not None
    assert (delivery.status, delivery.response_text) == (200, "YES")
    [event] = receiver.events
    assert event.provider == "freekassa"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_ref == "pay-1"
    assert event.external_id == created.external_id
    assert event.dedupe_key == created.external_id
    assert event.amount == Money(15000, RUB)


@pytest.mark.parametrize(("raw", "minor"), [("100", 10000), ("100.0", 10000), ("99.5", 9950)])
async def test_signature_uses_the_raw_amount(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway, raw: str, minor: int
) -> None:
    """SIGN is checked over AMOUNT exactly as sent, and that string is the event's amount."""
    await gateway.create_payment(checkout())
    event = await gateway.parse_webhook(webhook(emu.notification_body("pay-1", amount_text=raw)))
    assert event.amount == Money(minor, RUB)


async def test_uppercase_sign_is_accepted(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """SIGN is compared case-insensitively."""
    await gateway.create_payment(checkout())
    fields = dict(emu.notification_fields("pay-1"))
    fields["SIGN"] = fields["SIGN"].upper()
    event = await gateway.parse_webhook(webhook(urlencode(fields).encode()))
    assert event.kind is EventKind.PAYMENT_SUCCEEDED


async def test_wrong_source_ip_is_refused(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway, receiver: Receiver
) -> None:
    """A correctly signed delivery from outside the allowlist is refused."""
    await gateway.create_payment(checkout())
    delivery = await emu.pay("pay-1", source_ip="127.0.0.2")
    assert delivery is not None
    assert delivery.status == 401
    assert receiver.events == []
    assert isinstance(receiver.errors[0], WebhookAuthError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tamper": {"AMOUNT": "1000.00"}},  # tampered amount breaks the signature
        {"tamper": {"MERCHANT_ORDER_ID": "pay-2"}},  # credited to another payment
        {"secret_word_2": "guessed"},  # forged with the wrong secret
        {"tamper": {"SIGN": ""}},  # empty signature
        {"tamper": {"SIGN": "ж" * 32}},  # not even hex
        {"overrides": {"MERCHANT_ID": "999"}},  # validly signed, someone else's shop
    ],
)
async def test_forged_notifications_are_unauthenticated(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway, kwargs: dict[str, Any]
) -> None:
    """Tampered, forged, unsigned and foreign-merchant notifications raise WebhookAuthError."""
    await gateway.create_payment(checkout())
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(emu.notification_body("pay-1", **kwargs)))


async def test_missing_sign_is_unauthenticated(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """A notification without SIGN at all raises WebhookAuthError."""
    await gateway.create_payment(checkout())
    fields = [(k, v) for k, v in emu.notification_fields("pay-1") if k != "SIGN"]
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(urlencode(fields).encode()))


async def test_garbage_from_foreign_ip_is_auth_error(gateway: FreeKassaGateway) -> None:
    """The address check comes first: garbage from outside is an auth error."""
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(b"\xff\x00garbage", ip="198.51.100.1"))


async def test_malformed_forms(emu: FreeKassaEmulator, gateway: FreeKassaGateway) -> None:
    """Non-forms, duplicated fields and missing fields raise WebhookMalformedError."""
    await gateway.create_payment(checkout())
    good = emu.notification_fields("pay-1")
    bodies = [
        json.dumps(dict(good)).encode(),
        b"\xff\xfe\xfd",
        urlencode([*good, ("AMOUNT", "1.00")]).encode(),
        urlencode([(k, v) for k, v in good if k != "MERCHANT_ORDER_ID"]).encode(),
        urlencode([(k, v) for k, v in good if k != "AMOUNT"]).encode(),
    ]
    for body in bodies:
        with pytest.raises(WebhookMalformedError):
            await gateway.parse_webhook(webhook(body))


@pytest.mark.parametrize("raw", ["abc", "1.005", "0", "-5.00", "NaN"])
async def test_signed_but_unparsable_amount_is_malformed(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway, raw: str
) -> None:
    """A correctly signed AMOUNT that is not a positive kopeck amount is malformed."""
    await gateway.create_payment(checkout())
    body = emu.notification_body("pay-1", amount_text=raw)
    with pytest.raises(WebhookMalformedError):
        await gateway.parse_webhook(webhook(body))


async def test_missing_intid_is_malformed(
    emu: FreeKassaEmulator, gateway: FreeKassaGateway
) -> None:
    """A signed notification without intid cannot be deduplicated, so it is malformed."""
    await gateway.create_payment(checkout())
    fields = [(k, v) for k, v in emu.notification_fields("pay-1") if k != "intid"]
    with pytest.raises(WebhookMalformedError):
        await gateway.parse_webhook(webhook(urlencode(fields).encode()))


async def test_numeric_shop_id_setting(emu: FreeKassaEmulator) -> None:
    """A shop id given as a number (as from a typed config) works like the string."""
    settings = attrs.evolve(settings_for(emu), shop_id=emu.shop_id)
    assert settings.shop_id == str(emu.shop_id)
    async with FreeKassaGateway(settings) as gw:
        await gw.create_payment(checkout())
        event = await gw.parse_webhook(webhook(emu.notification_body("pay-1")))
    assert event.payment_ref == "pay-1"
