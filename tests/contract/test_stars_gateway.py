"""StarsGateway against the Telegram emulator, over real HTTP, and through the core's
checkout, confirmation and refund use cases on the in-memory store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.shop import ADMIN, Shop, make_shop
from vpnshop.adapters.payments.stars import (
    StarsCharge,
    StarsGateway,
    StarsSettings,
    payment_ref,
    store_charge_owner,
)
from vpnshop.adapters.telegram import BotApiClient, BotApiSettings
from vpnshop.domain.money import RUB, XTR, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.ports.payments import (
    AmountOutOfRangeError,
    CheckoutRequest,
    EventKind,
    PaymentGateway,
    ProviderRejectedError,
    ProviderUnavailableError,
    WebhookMalformedError,
    WebhookRequest,
)
from vpnshop.services.checkout import StartCheckout
from vpnshop.services.outcome import Outcome
from vpnshop.services.refunds import RefundPayment
from vpnshop.testing.memory import MemoryStore, memory_uow_factory
from vpnshop.testing.telegram import TelegramEmulator, TgUser


def request(stars: int = 150, telegram_id: int = 1001, **kw: Any) -> CheckoutRequest:
    fields: dict[str, Any] = {
        "payment_id": "pay-1",
        "order_id": "order-1",
        "amount": Money(stars, XTR),
        "description": "VPN, 1 month",
        "idempotency_key": "pay:pay-1",
        "customer_telegram_id": telegram_id,
        **kw,
    }
    return CheckoutRequest(**fields)


def as_webhook(update: dict[str, Any]) -> WebhookRequest:
    """How the bot shell hands a Telegram update to the gateway."""
    return WebhookRequest(body=json.dumps(update).encode(), headers={}, remote_ip="telegram")


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emu:
        yield emu


@pytest.fixture
async def client(tg: TelegramEmulator) -> AsyncIterator[BotApiClient]:
    async with BotApiClient(BotApiSettings(tg.token, tg.api_url, timeout=5)) as c:
        yield c


@pytest.fixture
def gateway(client: BotApiClient) -> StarsGateway:
    return StarsGateway(client)


@pytest.fixture
async def alice(tg: TelegramEmulator) -> TgUser:
    user = tg.user(1001, "Alice")
    await user.start()
    tg.feed.pending.clear()
    return user


_: PaymentGateway = StarsGateway(BotApiClient(BotApiSettings("1:x")))


async def approve_next_pre_checkout(client: BotApiClient, ok: bool = True) -> dict[str, Any]:
    """Play the bot: take the next pre_checkout_query update and answer it."""
    while True:
        for update in await client.call("getUpdates", {"timeout": 5}):
            await client.call("getUpdates", {"offset": update["update_id"] + 1})
            query = update.get("pre_checkout_query")
            if query is not None:
                answer = {"pre_checkout_query_id": query["id"], "ok": ok}
                if not ok:
                    answer["error_message"] = "No longer payable"
                await client.call("answerPreCheckoutQuery", answer)
                return query


async def next_payment_update(client: BotApiClient) -> dict[str, Any]:
    while True:
        for update in await client.call("getUpdates", {"timeout": 5}):
            await client.call("getUpdates", {"offset": update["update_id"] + 1})
            message = update.get("message") or {}
            if "successful_payment" in message or "refunded_payment" in message:
                return update


async def test_invoice_is_built_from_the_order(
    gateway: StarsGateway, tg: TelegramEmulator, alice: TgUser
) -> None:
    """The invoice is in XTR with one price equal to the order, and its payload names
    our payment, not a price."""
    checkout = await gateway.create_payment(request(150))
    assert checkout.url is None and checkout.external_id is None
    assert checkout.invoice_payload == "vs1:pay-1"
    assert payment_ref(checkout.invoice_payload) == "pay-1"
    assert alice.last.invoice is not None
    assert (alice.last.invoice["currency"], alice.last.invoice["total_amount"]) == ("XTR", 150)
    assert alice.last.invoice_payload == "vs1:pay-1"
    [call] = tg.calls_of("sendInvoice")
    assert json.loads(str(call.params.string("prices"))) == [
        {"label": "VPN, 1 month", "amount": 150}
    ]
    assert not call.params.string("provider_token")


async def test_invoice_link_mode(client: BotApiClient, alice: TgUser) -> None:
    """In link mode the checkout is a t.me invoice link that the user can pay."""
    gateway = StarsGateway(client, StarsSettings(mode="link", title="VPN"))
    checkout = await gateway.create_payment(request(70))
    assert checkout.url is not None and checkout.url.startswith("https://t.me/$")
    approving = asyncio.create_task(approve_next_pre_checkout(client))
    paid = await alice.pay_link(checkout.url)
    assert paid.ok and (await approving)["invoice_payload"] == "vs1:pay-1"


async def test_refusals_and_outages(
    gateway: StarsGateway, tg: TelegramEmulator, alice: TgUser
) -> None:
    """Another currency, an amount out of range and a blocked customer are rejected; a
    flood limit or an unreachable API is unavailable."""
    with pytest.raises(ProviderRejectedError, match="XTR only"):
        await gateway.create_payment(request(payment_id="p", amount=Money(100, RUB)))
    with pytest.raises(AmountOutOfRangeError):
        await gateway.create_payment(request(10001))
    tg.throttle_next(retry_after=3)
    with pytest.raises(ProviderUnavailableError, match="429"):
        await gateway.create_payment(request())
    await alice.block()
    with pytest.raises(ProviderRejectedError, match="blocked"):
        await gateway.create_payment(request())
    async with TelegramEmulator() as gone:
        base = gone.api_url
    async with BotApiClient(BotApiSettings(tg.token, base, timeout=2)) as dead:
        with pytest.raises(ProviderUnavailableError):
            await StarsGateway(dead).create_payment(request())


async def test_successful_and_refunded_payment_updates_become_events(
    gateway: StarsGateway, client: BotApiClient, alice: TgUser
) -> None:
    """successful_payment becomes PAYMENT_SUCCEEDED keyed on the charge id, with our
    payment id and the amount; refunded_payment becomes REFUND_SUCCEEDED."""
    await gateway.create_payment(request(150))
    approving = asyncio.create_task(approve_next_pre_checkout(client))
    paid = await alice.pay()
    await approving
    update = await next_payment_update(client)
    event = await gateway.parse_webhook(as_webhook(update))
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert (event.external_id, event.dedupe_key) == (paid.charge_id, f"stars:{paid.charge_id}")
    assert (event.payment_ref, event.amount, event.telegram_id) == (
        "pay-1",
        Money(150, XTR),
        alice.id,
    )
    again = await gateway.parse_webhook(as_webhook(update["message"]))  # bare Message too
    assert again.dedupe_key == event.dedupe_key
    assert paid.charge_id is not None
    await alice.refunded(paid.charge_id)
    refund = await gateway.parse_webhook(as_webhook(await next_payment_update(client)))
    assert refund.kind is EventKind.REFUND_SUCCEEDED and refund.external_id == paid.charge_id
    assert refund.dedupe_key == f"stars:refund:{paid.charge_id}"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (
            json.dumps(
                {"message": {"successful_payment": {"currency": "XTR", "total_amount": 5}}}
            ).encode(),
            "telegram_payment_charge_id",
        ),
        (
            json.dumps(
                {
                    "successful_payment": {
                        "currency": "USD",
                        "total_amount": 5,
                        "invoice_payload": "vs1:p",
                        "telegram_payment_charge_id": "c",
                    }
                }
            ).encode(),
            "not XTR",
        ),
        (
            json.dumps(
                {
                    "successful_payment": {
                        "currency": "XTR",
                        "total_amount": 5,
                        "invoice_payload": "price=1",
                        "telegram_payment_charge_id": "c",
                    }
                }
            ).encode(),
            "not one of ours",
        ),
    ],
)
async def test_malformed_updates_are_refused(
    gateway: StarsGateway, body: bytes, reason: str
) -> None:
    """A body that is not a well-formed payment of ours raises WebhookMalformedError."""
    with pytest.raises(WebhookMalformedError, match=reason):
        await gateway.parse_webhook(WebhookRequest(body=body, headers={}, remote_ip="telegram"))


async def test_other_updates_are_ignored(gateway: StarsGateway) -> None:
    """An update without a payment (a text, a callback) is IGNORED."""
    event = await gateway.parse_webhook(
        as_webhook({"update_id": 7, "message": {"message_id": 1, "date": 0, "text": "hi"}})
    )
    assert event.kind is EventKind.IGNORED
    event = await gateway.parse_webhook(as_webhook({"update_id": 8, "callback_query": {}}))
    assert event.kind is EventKind.IGNORED


async def test_refund_calls_refund_star_payment_once(
    client: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """refund() refunds the whole charge to its payer; a retry after success is fine, a
    partial refund or an unknown charge is rejected, and without the lookup there are no
    refunds."""
    assert not StarsGateway(client).supports_refund
    charges: dict[str, StarsCharge] = {}

    async def owner(charge_id: str) -> StarsCharge | None:
        return charges.get(charge_id)

    gateway = StarsGateway(client, charge_owner=owner)
    assert gateway.supports_refund
    await gateway.create_payment(request(150))
    approving = asyncio.create_task(approve_next_pre_checkout(client))
    paid = await alice.pay()
    await approving
    assert paid.charge_id is not None
    charges[paid.charge_id] = StarsCharge(alice.id, Money(150, XTR))
    with pytest.raises(ProviderRejectedError, match="whole"):
        await gateway.refund(paid.charge_id, Money(50, XTR), "r1")
    result = await gateway.refund(paid.charge_id, Money(150, XTR), "r2")
    assert result.succeeded and tg.star_payments[paid.charge_id].refunded
    assert (await gateway.refund(paid.charge_id, Money(150, XTR), "r2")).succeeded
    with pytest.raises(ProviderRejectedError, match="no customer"):
        await gateway.refund("unknown", Money(1, XTR), "r3")


@pytest.fixture
async def shop() -> Shop:
    return await make_shop(memory_uow_factory(MemoryStore()))


async def test_through_the_core_a_replayed_payment_is_credited_once(
    shop: Shop, client: BotApiClient, tg: TelegramEmulator, alice: TgUser
) -> None:
    """Checkout for a plan's XTR price sends the invoice; the successful_payment update
    delivered 10 times at once confirms the payment once; RefundPayment refunds it
    through refundStarPayment."""
    gateway = StarsGateway(client, charge_owner=store_charge_owner(shop.deps.uow))
    customer_id = await shop.customer(alice.id)
    link = await StartCheckout(shop.deps, {"stars": gateway})(
        customer_id, "stars", plan_code="month"
    )
    assert link.url is None and link.invoice_payload == f"vs1:{link.payment_id}"
    assert alice.last.invoice is not None and alice.last.invoice["total_amount"] == 130
    approving = asyncio.create_task(approve_next_pre_checkout(client))
    paid = await alice.pay()
    await approving
    update = await next_payment_update(client)
    outcomes = await asyncio.gather(
        *[shop.confirm(await gateway.parse_webhook(as_webhook(update))) for _ in range(10)]
    )
    assert sorted(outcomes) == sorted([Outcome.CONFIRMED] + [Outcome.DUPLICATE] * 9)
    async with shop.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
    assert payment is not None and payment.status is PaymentStatus.SUCCEEDED
    assert payment.external_id == paid.charge_id

    refund = await RefundPayment(shop.deps, {"stars": gateway})(
        link.payment_id, admin=ADMIN, reason="customer asked"
    )
    assert refund.amount == Money(130, XTR) and not refund.to_balance
    assert paid.charge_id is not None and tg.star_payments[paid.charge_id].refunded
