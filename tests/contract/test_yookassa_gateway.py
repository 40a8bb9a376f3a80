"""YooKassaGateway against the YooKassa emulator, over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from tests.contract.helpers import Receiver, checkout
from vpnshop.adapters.payments.yookassa import (
    YOOKASSA_NOTIFICATION_IPS,
    YooKassaConfigError,
    YooKassaGateway,
    YooKassaRejectedError,
    YooKassaSettings,
    idempotence_key,
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
from vpnshop.testing.yookassa import YooKassaEmulator


def settings_for(emu: YooKassaEmulator, **overrides: Any) -> YooKassaSettings:
    base = YooKassaSettings(
        shop_id=emu.shop_id,
        secret_key=emu.secret_key,
        api_url=emu.api_url,
        return_url="https://t.me/vpnshop_bot",
        allowed_ips=("127.0.0.1",),
        timeout_seconds=2.0,
        max_attempts=3,
        retry_wait_initial=0.01,
        retry_wait_max=0.02,
    )
    return attrs.evolve(base, **overrides)


@pytest.fixture
async def emu() -> AsyncIterator[YooKassaEmulator]:
    async with YooKassaEmulator() as emulator:
        yield emulator


@pytest.fixture
async def gateway(emu: YooKassaEmulator) -> AsyncIterator[YooKassaGateway]:
    async with YooKassaGateway(settings_for(emu)) as gw:
        yield gw


def webhook(body: bytes, ip: str = "127.0.0.1") -> WebhookRequest:
    return WebhookRequest(
        body=body,
        headers={"Content-Type": "application/json"},
        remote_ip=ip,
        content_type="application/json",
    )


# -- configuration ----------------------------------------------------------------------


def test_gateway_satisfies_the_port(gateway: YooKassaGateway) -> None:
    """The adapter is structurally a PaymentGateway with refunds and a plain 200 reply."""
    port: PaymentGateway = gateway
    assert port.name == "yookassa"
    assert port.currency == RUB
    assert port.supports_refund is True
    assert port.webhook_reply.status == 200


@pytest.mark.parametrize("missing", ["shop_id", "secret_key"])
def test_missing_secret_is_a_config_error(missing: str) -> None:
    """A gateway without its shop id or secret refuses to exist, naming the setting."""
    settings = YooKassaSettings(shop_id="1", secret_key="s", return_url="https://x")
    with pytest.raises(YooKassaConfigError) as info:
        YooKassaGateway(attrs.evolve(settings, **{missing: ""}))  # type: ignore[arg-type]
    assert info.value.setting == missing
    assert missing in str(info.value)


def test_secret_is_not_in_repr() -> None:
    """The secret key never shows up in the settings' repr (logs, tracebacks)."""
    settings = YooKassaSettings(shop_id="1", secret_key="very-secret-value")
    assert "very-secret-value" not in repr(settings)


def test_default_allowlist_is_yookassas_documented_list() -> None:
    """By default YooKassa's IPv4 ranges and the IPv6 /32 pass, loopback does not."""
    gw = YooKassaGateway(YooKassaSettings(shop_id="1", secret_key="s"))
    assert gw.allowlist.allows("185.71.76.17")
    assert gw.allowlist.allows("77.75.156.35")
    assert gw.allowlist.allows("2a02:5180:0:1509::5")
    assert not gw.allowlist.allows("127.0.0.1")
    assert not gw.allowlist.allows("77.75.156.12")
    assert len(YOOKASSA_NOTIFICATION_IPS) == 7


def test_idempotence_key_is_stable_and_short() -> None:
    """Short keys pass as they are; long ones hash to the same 64 characters every time."""
    assert idempotence_key("checkout-1") == "checkout-1"
    long_key = "x" * 200
    assert idempotence_key(long_key) == idempotence_key(long_key)
    assert len(idempotence_key(long_key)) == 64


# -- create -----------------------------------------------------------------------------


async def test_create_sends_yookassas_request(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """Create POSTs Basic auth, the Idempotence-Key, a 2-decimal amount, capture and metadata."""
    result = await gateway.create_payment(checkout(amount="99.5", save_payment_method=True))
    assert result.external_id in emu.payments
    assert result.url == f"{emu.base_url}/checkout/{result.external_id}"
    [call] = emu.calls("POST /v3/payments")
    assert call.headers["Idempotence-Key"] == "checkout-1"
    assert call.headers["Authorization"].startswith("Basic ")
    body = json.loads(call.body)
    assert body["amount"] == {"value": "99.50", "currency": "RUB"}
    assert body["capture"] is True
    assert body["confirmation"] == {"type": "redirect", "return_url": "https://t.me/vpnshop_bot"}
    assert body["metadata"] == {"payment_id": "pay-1", "order_id": "order-1"}
    assert body["save_payment_method"] is True
    assert "receipt" not in body


async def test_request_return_url_wins(emu: YooKassaEmulator, gateway: YooKassaGateway) -> None:
    """A checkout's own return_url replaces the configured one."""
    await gateway.create_payment(checkout(return_url="https://t.me/other_bot"))
    body = json.loads(emu.calls("POST /v3/payments")[0].body)
    assert body["confirmation"]["return_url"] == "https://t.me/other_bot"


async def test_same_idempotency_key_returns_same_payment(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """Creating twice with the same request yields one payment at YooKassa."""
    first = await gateway.create_payment(checkout())
    second = await gateway.create_payment(checkout())
    assert first.external_id == second.external_id
    assert len(emu.payments) == 1


async def test_same_key_different_body_is_rejected(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """Reusing an idempotency key for a different request is a 400, not someone's payment."""
    await gateway.create_payment(checkout())
    with pytest.raises(YooKassaRejectedError) as info:
        await gateway.create_payment(checkout(amount="200.00"))
    assert info.value.http_status == 400
    assert info.value.parameter == "Idempotence-Key"
    assert len(emu.payments) == 1


async def test_lost_response_is_retried_with_same_key(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """A 500 after the payment was made is retried with the same key and finds that payment."""
    emu.fail_next(1, 500, route="POST /v3/payments", after_processing=True)
    result = await gateway.create_payment(checkout())
    calls = emu.calls("POST /v3/payments")
    assert len(calls) == 2
    assert {c.headers["Idempotence-Key"] for c in calls} == {"checkout-1"}
    assert calls[0].body == calls[1].body
    assert list(emu.payments) == [result.external_id]


@pytest.mark.parametrize("status", [500, 502, 429, 202])
async def test_transient_statuses_are_retried(
    emu: YooKassaEmulator, gateway: YooKassaGateway, status: int
) -> None:
    """5xx, 429 and 202 are retried until the call succeeds."""
    emu.fail_next(2, status, route="POST /v3/payments")
    result = await gateway.create_payment(checkout())
    assert len(emu.calls("POST /v3/payments")) == 3
    assert result.external_id in emu.payments


async def test_persistent_5xx_is_unavailable(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """After max_attempts 5xx answers the gateway raises ProviderUnavailableError."""
    emu.fail_next(5, 503)
    with pytest.raises(ProviderUnavailableError):
        await gateway.create_payment(checkout())
    assert len(emu.calls("POST /v3/payments")) == 3


async def test_4xx_is_not_retried(emu: YooKassaEmulator, gateway: YooKassaGateway) -> None:
    """A 400 raises ProviderRejectedError after exactly one call."""
    emu.fail_next(1, 400)
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(checkout())
    assert len(emu.calls("POST /v3/payments")) == 1


async def test_connection_refused_is_unavailable(emu: YooKassaEmulator) -> None:
    """An unreachable API raises ProviderUnavailableError (after bounded retries)."""
    dead = settings_for(emu, api_url="http://127.0.0.1:9/v3", max_attempts=2)
    async with YooKassaGateway(dead) as gw:
        with pytest.raises(ProviderUnavailableError):
            await gw.create_payment(checkout())


async def test_bad_credentials_are_rejected(emu: YooKassaEmulator) -> None:
    """A wrong secret gets YooKassa's 401 invalid_credentials, surfaced as a rejection."""
    async with YooKassaGateway(settings_for(emu, secret_key="wrong")) as gw:
        with pytest.raises(YooKassaRejectedError) as info:
            await gw.create_payment(checkout())
    assert info.value.http_status == 401
    assert info.value.error_code == "invalid_credentials"
    assert emu.payments == {}


async def test_amount_limits(emu: YooKassaEmulator) -> None:
    """Amounts outside min/max raise AmountOutOfRangeError without calling YooKassa."""
    settings = settings_for(emu, min_amount=Money(5000, RUB), max_amount=Money(100000, RUB))
    async with YooKassaGateway(settings) as gw:
        with pytest.raises(AmountOutOfRangeError):
            await gw.create_payment(checkout(amount="49.99"))
        with pytest.raises(AmountOutOfRangeError):
            await gw.create_payment(checkout(amount="1000.01"))
        ok = await gw.create_payment(checkout(amount="1000.00"))
    assert list(emu.payments) == [ok.external_id]


async def test_other_currency_is_rejected(gateway: YooKassaGateway) -> None:
    """A USD checkout on a RUB shop is refused locally."""
    with pytest.raises(ProviderRejectedError):
        await gateway.create_payment(attrs.evolve(checkout(), amount=Money(10000, USD)))


async def test_receipt_is_sent_when_enabled() -> None:
    """With receipts on, the payment carries a 54-FZ receipt with email and vat_code."""
    async with YooKassaEmulator(receipts_required=True) as emu:
        async with YooKassaGateway(settings_for(emu, send_receipt=True, vat_code=6)) as gw:
            await gw.create_payment(checkout(email="u@example.com"))
            with pytest.raises(ProviderRejectedError):
                await gw.create_payment(checkout(2))  # no email: refused locally
        body = json.loads(emu.calls("POST /v3/payments")[0].body)
    receipt = body["receipt"]
    assert receipt["customer"] == {"email": "u@example.com"}
    [item] = receipt["items"]
    assert item["vat_code"] == 6
    assert item["amount"] == {"value": "100.00", "currency": "RUB"}
    assert len(emu.calls("POST /v3/payments")) == 1


# -- fetch ------------------------------------------------------------------------------


async def test_fetch_reports_provider_state(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """fetch_payment maps pending/succeeded/canceled/expired and echoes our payment id."""
    created = [await gateway.create_payment(checkout(n)) for n in range(1, 5)]
    ids = [c.external_id for c in created if c.external_id is not None]
    assert len(ids) == 4
    await emu.pay(ids[1], notify=False)
    await emu.cancel(ids[2], notify=False)
    await emu.expire(ids[3], notify=False)
    statuses = []
    for n, external_id in enumerate(ids, start=1):
        fetched = await gateway.fetch_payment(f"pay-{n}", external_id)
        assert fetched is not None
        assert fetched.payment_ref == f"pay-{n}"
        assert fetched.amount == Money(10000, RUB)
        statuses.append(fetched.status)
    assert statuses == [
        ProviderStatus.PENDING,
        ProviderStatus.SUCCEEDED,
        ProviderStatus.CANCELED,
        ProviderStatus.EXPIRED,
    ]


async def test_fetch_unknown_is_none(gateway: YooKassaGateway) -> None:
    """An unknown id, or no id at all, gives None."""
    assert await gateway.fetch_payment("pay-1", "2f000000-0000-5000-8000-000000000000") is None
    assert await gateway.fetch_payment("pay-1", None) is None


async def test_saved_method_is_surfaced(emu: YooKassaEmulator, gateway: YooKassaGateway) -> None:
    """A payment that saved its method reports the method id, which can be charged later."""
    created = await gateway.create_payment(checkout(save_payment_method=True))
    assert created.external_id is not None
    await emu.pay(created.external_id, notify=False)
    fetched = await gateway.fetch_payment("pay-1", created.external_id)
    assert fetched is not None
    assert fetched.saved_method_id is not None
    renewal = await gateway.charge_saved_method(checkout(2), fetched.saved_method_id)
    assert renewal.status is ProviderStatus.SUCCEEDED
    assert renewal.payment_ref == "pay-2"
    body = json.loads(emu.calls("POST /v3/payments")[1].body)
    assert "confirmation" not in body
    assert body["payment_method_id"] == fetched.saved_method_id


# -- refunds ----------------------------------------------------------------------------


async def test_refund(emu: YooKassaEmulator, gateway: YooKassaGateway) -> None:
    """A full refund succeeds, uses the given Idempotence-Key, and the payment reads REFUNDED."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.pay(created.external_id, notify=False)
    result = await gateway.refund(created.external_id, Money(10000, RUB), "refund-1")
    again = await gateway.refund(created.external_id, Money(10000, RUB), "refund-1")
    assert result.succeeded
    assert result.external_id in emu.refunds
    assert again.external_id == result.external_id
    assert len(emu.refunds) == 1
    assert emu.calls("POST /v3/refunds")[0].headers["Idempotence-Key"] == "refund-1"
    fetched = await gateway.fetch_payment("pay-1", created.external_id)
    assert fetched is not None
    assert fetched.status is ProviderStatus.REFUNDED


async def test_refund_of_too_much_is_rejected(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """Refunding more than was paid is YooKassa's 400, raised as a rejection."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.pay(created.external_id, notify=False)
    with pytest.raises(YooKassaRejectedError):
        await gateway.refund(created.external_id, Money(10001, RUB), "refund-1")


async def test_pending_refund_then_notification(
    emu: YooKassaEmulator, gateway: YooKassaGateway, receiver: Receiver
) -> None:
    """A pending refund is not yet succeeded; its notification yields REFUND_SUCCEEDED."""
    emu.refund_status = "pending"
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.pay(created.external_id)
    result = await gateway.refund(created.external_id, Money(4000, RUB), "refund-1")
    assert result.succeeded is False
    delivery = await emu.complete_refund(result.external_id)
    assert delivery["status"] == "succeeded"
    refund_event = receiver.events[-1]
    assert refund_event.kind is EventKind.REFUND_SUCCEEDED
    assert refund_event.dedupe_key == result.external_id
    assert refund_event.external_id == created.external_id
    assert refund_event.payment_ref == "pay-1"
    assert refund_event.amount == Money(4000, RUB)


# -- notifications ----------------------------------------------------------------------


async def test_genuine_success_notification(
    emu: YooKassaEmulator, gateway: YooKassaGateway, receiver: Receiver
) -> None:
    """A real delivery after payment becomes PAYMENT_SUCCEEDED keyed by YooKassa's id."""
    created = await gateway.create_payment(checkout(save_payment_method=True))
    assert created.external_id is not None
    await emu.pay(created.external_id)
    assert emu.deliveries[-1].status == 200
    [event] = receiver.events
    assert event.provider == "yookassa"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.dedupe_key == created.external_id
    assert event.external_id == created.external_id
    assert event.payment_ref == "pay-1"
    assert event.amount == Money(10000, RUB)
    assert event.saved_method_id is not None
    assert event.occurred_at is not None
    assert event.occurred_at.tzinfo is not None
    # The gateway re-fetched the payment instead of trusting the body.
    assert emu.calls("GET /v3/payments/{id}")


async def test_canceled_and_expired_notifications(
    emu: YooKassaEmulator, gateway: YooKassaGateway, receiver: Receiver
) -> None:
    """A declined payment gives PAYMENT_CANCELED, an abandoned one PAYMENT_EXPIRED."""
    a = await gateway.create_payment(checkout(1))
    b = await gateway.create_payment(checkout(2))
    assert a.external_id is not None
    assert b.external_id is not None
    await emu.cancel(a.external_id)
    await emu.expire(b.external_id)
    assert [e.kind for e in receiver.events] == [
        EventKind.PAYMENT_CANCELED,
        EventKind.PAYMENT_EXPIRED,
    ]


async def test_wrong_source_ip_is_refused(
    emu: YooKassaEmulator, gateway: YooKassaGateway, receiver: Receiver
) -> None:
    """A genuine body delivered from an address outside the allowlist is refused."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.pay(created.external_id, notify=False)
    delivery = await emu.notify("payment.succeeded", created.external_id, source_ip="127.0.0.2")
    assert delivery.status == 401
    assert receiver.events == []
    assert isinstance(receiver.errors[0], WebhookAuthError)
    # No API call was made for an unauthenticated sender.
    assert emu.calls("GET /v3/payments/{id}") == []


async def test_claimed_success_of_pending_payment_is_ignored(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """A body saying succeeded for a payment the API calls pending credits nothing."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    body = emu.notification_body(
        "payment.succeeded",
        created.external_id,
        object_overrides={"status": "succeeded", "paid": True},
    )
    event = await gateway.parse_webhook(webhook(body))
    assert event.kind is EventKind.IGNORED
    assert event.amount is None
    assert event.dedupe_key != created.external_id


async def test_tampered_amount_is_replaced_by_the_apis(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """A body with a tampered amount and metadata yields the API's amount and payment id."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.pay(created.external_id, notify=False)
    body = emu.notification_body(
        "payment.succeeded",
        created.external_id,
        object_overrides={
            "amount": {"value": "1000000.00", "currency": "RUB"},
            "metadata": {"payment_id": "someone-else"},
        },
    )
    event = await gateway.parse_webhook(webhook(body))
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.amount == Money(10000, RUB)
    assert event.payment_ref == "pay-1"


async def test_stale_success_claim_for_canceled_payment(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """When the API says canceled, a body claiming success yields PAYMENT_CANCELED."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.cancel(created.external_id, notify=False)
    body = emu.notification_body(
        "payment.succeeded", created.external_id, object_overrides={"status": "succeeded"}
    )
    event = await gateway.parse_webhook(webhook(body))
    assert event.kind is EventKind.PAYMENT_CANCELED


async def test_unknown_payment_is_unauthenticated(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """A notification about a payment YooKassa does not know raises WebhookAuthError."""
    body = emu.notification_body(
        "payment.succeeded",
        "2f000000-0000-5000-8000-000000000000",
        object_overrides={"status": "succeeded"},
    )
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(body))


async def test_api_down_during_notification(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """If the re-fetch fails, the notification raises ProviderUnavailableError (retry later)."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    await emu.pay(created.external_id, notify=False)
    body = emu.notification_body("payment.succeeded", created.external_id)
    emu.fail_next(3, 500, route="GET /v3/payments/{id}")
    with pytest.raises(ProviderUnavailableError):
        await gateway.parse_webhook(webhook(body))


async def test_waiting_for_capture_and_other_events_are_ignored(
    emu: YooKassaEmulator, gateway: YooKassaGateway
) -> None:
    """waiting_for_capture (we capture at once) and unrelated events are IGNORED."""
    created = await gateway.create_payment(checkout())
    assert created.external_id is not None
    body = emu.notification_body("payment.waiting_for_capture", created.external_id)
    assert (await gateway.parse_webhook(webhook(body))).kind is EventKind.IGNORED
    other = json.dumps(
        {"type": "notification", "event": "payout.succeeded", "object": {"id": "po-1"}}
    ).encode()
    assert (await gateway.parse_webhook(webhook(other))).kind is EventKind.IGNORED


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"type":"error","event":"payment.succeeded","object":{"id":"x"}}',
        b'{"type":"notification","object":{"id":"x"}}',
        b'{"type":"notification","event":"payment.succeeded"}',
        b'{"type":"notification","event":"payment.succeeded","object":{}}',
        b'{"type":"notification","event":"payment.succeeded","object":{"id":"../refunds/x"}}',
        b'{"type":"notification","event":"payment.succeeded","object":{"id":42}}',
    ],
)
async def test_malformed_notifications(gateway: YooKassaGateway, body: bytes) -> None:
    """Bodies that are not a YooKassa notification raise WebhookMalformedError."""
    with pytest.raises(WebhookMalformedError):
        await gateway.parse_webhook(webhook(body))


async def test_ip_check_comes_before_parsing(gateway: YooKassaGateway) -> None:
    """Even garbage from a foreign address is an auth error, not a parse error."""
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(b"not json", ip="203.0.113.7"))
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(webhook(b"{}", ip=""))


async def test_refused_recheck_asks_for_redelivery(emu: YooKassaEmulator) -> None:
    """If YooKassa refuses our re-check (bad credentials), the notification is retried later."""
    async with YooKassaGateway(settings_for(emu)) as good:
        created = await good.create_payment(checkout())
    assert created.external_id is not None
    body = emu.notification_body("payment.succeeded", created.external_id)
    async with YooKassaGateway(settings_for(emu, secret_key="rotated")) as stale:
        with pytest.raises(ProviderUnavailableError):
            await stale.parse_webhook(webhook(body))
