"""TributeGateway against the local Tribute emulator, over real HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from tests.contract.helpers import Receiver
from tests.contract.helpers import json_webhook as webhook
from vpnshop.adapters.payments.tribute import (
    ProductMatch,
    TributeConfigError,
    TributeGateway,
    TributeProduct,
    TributeSettings,
)
from vpnshop.domain.money import EUR, RUB, Money
from vpnshop.ports.payments import (
    CheckoutRequest,
    EventKind,
    PaymentGateway,
    ProviderRejectedError,
    WebhookAuthError,
    WebhookMalformedError,
)
from vpnshop.testing.tribute import RETRY_SCHEDULE, TributeEmulator

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def checkout_request(plan_code: str | None = "month", telegram_id: int = 777) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id="pay-1",
        order_id="order-1",
        amount=Money(19900, RUB),
        description="VPN 1 month",
        idempotency_key="idem-1",
        customer_telegram_id=telegram_id,
        plan_code=plan_code,
    )


@pytest.fixture
async def emu() -> AsyncIterator[TributeEmulator]:
    async with TributeEmulator(now=NOW) as e:
        e.add_product("sMON", name="VPN month", price=19900)
        e.add_product("sEUR", name="VPN euro", price=500, currency="eur")
        e.add_product("sOTHER", name="Not for sale here", price=100)
        yield e


def settings_for(emu: TributeEmulator, **overrides: Any) -> TributeSettings:
    month, euro = emu.products["sMON"], emu.products["sEUR"]
    base = TributeSettings(
        api_key=emu.api_key,
        products=(
            TributeProduct(str(month.subscription_id), "month", emu.link("sMON")),
            TributeProduct(str(euro.subscription_id), "euro", emu.link("sEUR")),
        ),
    )
    return attrs.evolve(base, **overrides)


@pytest.fixture
def gateway(emu: TributeEmulator) -> TributeGateway:
    return TributeGateway(settings_for(emu))


def test_gateway_satisfies_the_port(gateway: TributeGateway) -> None:
    """The gateway structurally implements PaymentGateway, without refunds or limits."""
    port: PaymentGateway = gateway
    assert port.name == "tribute"
    assert port.currency == RUB
    assert port.supports_refund is False
    assert port.min_amount is None
    assert port.webhook_reply.status == 200


# -- configuration ----------------------------------------------------------------------------
def test_missing_api_key_is_a_config_error(emu: TributeEmulator) -> None:
    """Constructing the gateway without an API key fails and names the setting."""
    with pytest.raises(TributeConfigError) as info:
        TributeGateway(settings_for(emu, api_key=" "))
    assert info.value.setting == "api_key"


def test_no_products_is_a_config_error() -> None:
    """A Tribute gateway without products is refused at start-up."""
    with pytest.raises(TributeConfigError) as info:
        TributeGateway(TributeSettings(api_key="k"))
    assert info.value.setting == "products"


def test_duplicate_plan_is_a_config_error() -> None:
    """Two products for one plan would make the link ambiguous, so they are refused."""
    products = (
        TributeProduct("1", "month", "https://a"),
        TributeProduct("2", "month", "https://b"),
    )
    with pytest.raises(TributeConfigError):
        TributeGateway(TributeSettings(api_key="k", products=products))


def test_api_key_is_not_in_repr() -> None:
    """The settings record never prints the API key."""
    assert "s3cret-key" not in repr(TributeSettings(api_key="s3cret-key"))


# -- checkout ---------------------------------------------------------------------------------
async def test_create_returns_the_configured_link(
    emu: TributeEmulator, gateway: TributeGateway
) -> None:
    """create_payment hands out the plan's product link and no external id."""
    checkout = await gateway.create_payment(checkout_request("month"))
    assert checkout.external_id is None
    assert checkout.url == emu.link("sMON")


async def test_customer_param_is_appended_when_configured(emu: TributeEmulator) -> None:
    """With customer_param set, the link keeps its startapp and gains the Telegram id."""
    gw = TributeGateway(settings_for(emu, customer_param="user_id"))
    checkout = await gw.create_payment(checkout_request("month", telegram_id=4242))
    assert checkout.url == emu.link("sMON") + "&user_id=4242"


async def test_unknown_or_missing_plan_is_rejected(gateway: TributeGateway) -> None:
    """A plan without a Tribute product, or no plan at all, raises ProviderRejectedError."""
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(checkout_request("year"))
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(checkout_request(None))


async def test_fetch_is_none_and_refund_unsupported(gateway: TributeGateway) -> None:
    """There is no status or refund API: fetch gives None, refund raises."""
    assert await gateway.fetch_payment("pay-1", None) is None
    with pytest.raises(ProviderRejectedError):
        await gateway.refund("1", Money(100, RUB), "r-1")


# -- genuine webhooks -------------------------------------------------------------------------
async def test_subscribing_through_the_link_starts_a_subscription(
    emu: TributeEmulator, gateway: TributeGateway, receiver: Receiver
) -> None:
    """Opening the returned link and paying delivers a signed new_subscription we parse."""
    checkout = await gateway.create_payment(checkout_request("month"))
    assert checkout.url is not None
    delivery = await emu.open_link(checkout.url, telegram_user_id=777)
    assert delivery.status == 200
    assert emu.link_visits
    [event] = receiver.events
    sub_id = emu.products["sMON"].subscription_id
    assert event.kind is EventKind.SUBSCRIPTION_STARTED
    assert event.provider == "tribute"
    assert event.telegram_id == 777
    assert event.product == "month"
    assert event.amount == Money(19900, RUB)
    assert event.expires_at == NOW + timedelta(days=30)
    assert event.dedupe_key == f"tribute:{sub_id}:777:2026-12-22T12:00:00.000000Z"
    assert event.external_id == str(sub_id)


async def test_renewal_has_a_new_key_and_redelivery_the_same(
    emu: TributeEmulator, receiver: Receiver
) -> None:
    """A renewal gets a new dedupe key (new expires_at); redelivering it repeats the key."""
    await emu.subscribe(777, "sMON")
    renewal = await emu.renew(777, "sMON")
    again = await emu.deliver(renewal.body, renewal.headers)
    assert again.status == 200
    started, renewed, redelivered = receiver.events
    assert renewed.kind is EventKind.SUBSCRIPTION_RENEWED
    assert renewed.expires_at == NOW + timedelta(days=60)
    assert renewed.dedupe_key != started.dedupe_key
    assert redelivered.dedupe_key == renewed.dedupe_key


async def test_cancellation_does_not_collide_with_the_renewal(
    emu: TributeEmulator, receiver: Receiver
) -> None:
    """A cancellation is its own event with a key distinct from the period it ends."""
    await emu.subscribe(777, "sMON")
    await emu.cancel(777, "sMON")
    started, cancelled = receiver.events
    assert cancelled.kind is EventKind.SUBSCRIPTION_CANCELLED
    assert cancelled.product == "month"
    assert cancelled.expires_at == started.expires_at
    assert cancelled.dedupe_key != started.dedupe_key


async def test_two_users_at_the_same_second_get_distinct_keys(
    emu: TributeEmulator, receiver: Receiver
) -> None:
    """Subscribers of one product in the same second are never deduplicated together."""
    await emu.subscribe(1, "sMON")
    await emu.subscribe(2, "sMON")
    first, second = receiver.events
    assert first.dedupe_key != second.dedupe_key
    assert (first.telegram_id, second.telegram_id) == (1, 2)


async def test_lowercase_currency_is_uppercased(emu: TributeEmulator, receiver: Receiver) -> None:
    """Tribute's lowercase "eur" with minor units becomes Money(500, EUR)."""
    await emu.subscribe(9, "sEUR")
    assert receiver.events[0].amount == Money(500, EUR)


async def test_donations_are_ignored(emu: TributeEmulator, receiver: Receiver) -> None:
    """An authentic donation is IGNORED and extends nothing."""
    delivery = await emu.donate(777)
    assert delivery.status == 200
    [event] = receiver.events
    assert event.kind is EventKind.IGNORED
    assert event.product is None


async def test_unmapped_product_is_ignored_with_a_warning(
    emu: TributeEmulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscription to a product we do not sell is IGNORED and logged, never extended."""
    with caplog.at_level(logging.WARNING, logger="vpnshop.adapters.payments.tribute"):
        await emu.subscribe(777, "sOTHER")
    [event] = receiver.events
    assert event.kind is EventKind.IGNORED
    assert event.product is None
    assert event.amount is None
    assert "unmapped product" in caplog.text


async def test_products_can_be_matched_by_web_app_link(emu: TributeEmulator) -> None:
    """With match_by=web_app_link the startapp code of the link picks the plan."""
    gw = TributeGateway(
        settings_for(
            emu,
            match_by=ProductMatch.WEB_APP_LINK,
            products=(TributeProduct("sMON", "month", emu.link("sMON")),),
        )
    )
    payload = emu.subscription_payload(777, "sMON")
    assert payload["web_app_link"] == "https://t.me/tribute/app?startapp=sMON"
    body, headers = emu.notification_body("new_subscription", payload)
    event = await gw.parse_webhook(webhook(body, headers))
    assert event.kind is EventKind.SUBSCRIPTION_STARTED
    assert event.product == "month"


# -- delivery semantics -----------------------------------------------------------------------
async def test_failed_delivery_is_retried_until_200(
    emu: TributeEmulator, receiver: Receiver
) -> None:
    """A 500 from us makes Tribute redeliver the same bytes, which then succeed."""
    receiver.fail_next = 1
    delivery = await emu.subscribe(777, "sMON")
    assert delivery.status == 500
    assert receiver.events == []
    assert await emu.retry_failed() == [delivery]
    assert delivery.statuses == [500, 200]
    assert len(receiver.events) == 1
    assert await emu.retry_failed() == []


async def test_forged_delivery_gets_401_until_retries_run_out(
    emu: TributeEmulator, receiver: Receiver
) -> None:
    """A forged webhook is answered 401 every time and Tribute's retries are bounded."""
    sub_payload = {"telegram_user_id": 1, "subscription_id": 1, "amount": 1, "currency": "rub"}
    forged = await emu.deliver(
        *emu.notification_body("new_subscription", sub_payload, api_key="guess")
    )
    for _ in range(len(RETRY_SCHEDULE) + 3):
        await emu.retry_failed()
    assert forged.statuses == [401] * (len(RETRY_SCHEDULE) + 1)
    assert receiver.events == []


# -- hostile inputs ---------------------------------------------------------------------------
@pytest.fixture
def genuine(emu: TributeEmulator) -> tuple[bytes, dict[str, str]]:
    product = emu.products["sMON"]
    payload = {
        "subscription_name": product.name,
        "subscription_id": product.subscription_id,
        "period": "monthly",
        "price": 19900,
        "amount": 19900,
        "currency": "rub",
        "telegram_user_id": 777,
        "expires_at": "2026-12-22T12:00:00.000000Z",
        "web_app_link": emu.web_app_link("sMON"),
    }
    return emu.notification_body("new_subscription", payload)


async def test_genuine_body_parses(
    gateway: TributeGateway, genuine: tuple[bytes, dict[str, str]]
) -> None:
    """The untouched body authenticates (so the hostile variants below are meaningful)."""
    event = await gateway.parse_webhook(webhook(*genuine))
    assert event.amount == Money(19900, RUB)


async def test_missing_signature_is_rejected(
    gateway: TributeGateway, genuine: tuple[bytes, dict[str, str]]
) -> None:
    """A body without trbt-signature raises WebhookAuthError."""
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(genuine[0], {}))


async def test_wrong_key_is_rejected(
    emu: TributeEmulator, gateway: TributeGateway, genuine: tuple[bytes, dict[str, str]]
) -> None:
    """A signature made with another key raises WebhookAuthError."""
    body = genuine[0]
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, {"trbt-signature": emu.sign(body, "other")}))


async def test_tampered_amount_breaks_the_signature(
    emu: TributeEmulator, gateway: TributeGateway
) -> None:
    """Changing the amount after signing raises WebhookAuthError."""
    sub = {"telegram_user_id": 777, "subscription_id": 1, "amount": 19900, "currency": "rub"}
    body, headers = emu.notification_body("new_subscription", sub, tamper={"amount": 1})
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body, headers))


async def test_reserialised_body_fails_so_raw_bytes_are_used(
    gateway: TributeGateway, genuine: tuple[bytes, dict[str, str]]
) -> None:
    """The same JSON with other whitespace fails: the HMAC covers the raw bytes."""
    body, headers = genuine
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(json.dumps(json.loads(body)).encode(), headers))


async def test_non_ascii_signature_is_an_auth_error(
    gateway: TributeGateway, genuine: tuple[bytes, dict[str, str]]
) -> None:
    """A non-ASCII signature header raises WebhookAuthError, not a TypeError."""
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(genuine[0], {"Trbt-Signature": "ж" * 64}))


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b"[]",
        b'{"name":"new_subscription"}',
        b'{"name":"new_subscription","payload":{"subscription_id":1,'
        b'"expires_at":"2026-12-22T12:00:00Z","amount":100,"currency":"rub"}}',
        b'{"name":"new_subscription","payload":{"telegram_user_id":7,"subscription_id":1,'
        b'"expires_at":"soon","amount":100,"currency":"rub"}}',
        b'{"name":"new_subscription","payload":{"telegram_user_id":7,"subscription_id":1,'
        b'"expires_at":"2026-12-22T12:00:00Z","amount":"199.00","currency":"rub"}}',
        b'{"name":"renewed_subscription","payload":{"telegram_user_id":7,"subscription_id":1,'
        b'"expires_at":"2026-12-22T12:00:00Z","amount":100,"currency":"btc"}}',
        b'{"name":"new_subscription","payload":{"telegram_user_id":true,"subscription_id":1,'
        b'"expires_at":"2026-12-22T12:00:00Z","amount":100,"currency":"rub"}}',
    ],
)
async def test_signed_but_malformed_bodies_are_malformed(
    emu: TributeEmulator, gateway: TributeGateway, body: bytes
) -> None:
    """Correctly signed bodies that are not a valid envelope raise WebhookMalformedError."""
    with pytest.raises(WebhookMalformedError):
        await gateway.parse_webhook(webhook(body, {"trbt-signature": emu.sign(body)}))
