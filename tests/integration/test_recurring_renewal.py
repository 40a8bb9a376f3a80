"""Auto-renewal by a saved YooKassa payment method, against the YooKassa emulator over real
HTTP, on every backend: charged through the outbox once, extended only on YooKassa's
success, the customer told on a decline, nothing charged once switched off."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import attrs
import pytest

from tests.contract.helpers import checkout
from tests.integration.shop import ADMIN, Shop, make_shop
from vpnshop.adapters.payments.yookassa import YooKassaGateway, YooKassaSettings
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.outbox import OutboxWorker
from vpnshop.services.recurring import CHARGE_SAVED_METHOD, ChargeSavedMethod
from vpnshop.services.renewals import RenewFromBalance, renewal_order_id
from vpnshop.testing.yookassa import YooKassaEmulator

Factory = Callable[[], UnitOfWork]
PRICE = Money(19900, RUB)


@attrs.define
class World:
    shop: Shop
    emu: YooKassaEmulator
    gateway: YooKassaGateway
    worker: OutboxWorker
    renew: RenewFromBalance


@pytest.fixture
async def world(uow_factory: Factory) -> AsyncIterator[World]:
    shop = await make_shop(uow_factory)
    async with YooKassaEmulator() as emu:
        settings = YooKassaSettings(
            shop_id=emu.shop_id,
            secret_key=emu.secret_key,
            api_url=emu.api_url,
            return_url="https://t.me/vpnshop_bot",
            allowed_ips=("127.0.0.1",),
            timeout_seconds=2.0,
            max_attempts=2,
            retry_wait_initial=0.01,
            retry_wait_max=0.02,
        )
        async with YooKassaGateway(settings) as gateway:
            charge = ChargeSavedMethod(shop.deps, gateway, shop.confirm)
            yield World(
                shop,
                emu,
                gateway,
                OutboxWorker(shop.deps, {CHARGE_SAVED_METHOD: charge}),
                RenewFromBalance(shop.deps, RUB, days_before=1, saved_method_provider="yookassa"),
            )


async def customer_with_saved_card(w: World, telegram_id: int) -> tuple[int, int, str]:
    """A customer whose first YooKassa payment saved a card, with a subscription ending
    in five days and auto-renewal on: (customer, subscription, method id)."""
    cid = await w.shop.customer(telegram_id)
    sub = await w.shop.extend(cid, 5, actor=ADMIN, reason="first", plan_code="month")
    assert sub.id is not None
    created = await w.gateway.create_payment(checkout(telegram_id, save_payment_method=True))
    assert created.external_id is not None
    await w.emu.pay(created.external_id, notify=False)
    seen = await w.gateway.fetch_payment(f"pay-{telegram_id}", created.external_id)
    assert seen is not None and seen.saved_method_id is not None
    now = w.shop.clock.now()
    async with w.shop.uow() as uow:
        oid = f"first{telegram_id}"
        await uow.orders.add(Order(oid, cid, OrderKind.TOPUP, PRICE, PRICE, created_at=now))
        await uow.payments.add(
            Payment(
                id=f"p{telegram_id}",
                order_id=oid,
                customer_id=cid,
                provider="yookassa",
                amount=PRICE,
                status=PaymentStatus.SUCCEEDED,
                external_id=created.external_id,
                saved_method_id=seen.saved_method_id,
                created_at=now,
                updated_at=now,
            )
        )
        await uow.subscriptions.set_auto_renew(sub.id, True)
        await uow.commit()
    return cid, sub.id, seen.saved_method_id


def charges(emu: YooKassaEmulator) -> list[dict[str, object]]:
    bodies = [json.loads(c.body) for c in emu.calls("POST /v3/payments")]
    return [b for b in bodies if "payment_method_id" in b]


async def expiry(w: World, sid: int) -> datetime:
    async with w.shop.uow() as uow:
        sub = await uow.subscriptions.get(sid)
    assert sub is not None
    return sub.expires_at


async def test_the_saved_card_is_charged_once_and_only_success_extends(world: World) -> None:
    """The scan only stores the order and enqueues the charge (no extension); the charge
    runs once with the payment's id as Idempotence-Key, and YooKassa's success extends."""
    w = world
    _, sid, method = await customer_with_saved_card(w, 31)
    before = await expiry(w, sid)
    w.shop.clock.advance(timedelta(days=4, hours=1))
    assert (await w.renew()).charging == 1
    assert await expiry(w, sid) == before  # never an optimistic extension
    assert charges(w.emu) == []
    await w.worker.drain()
    await w.worker.drain()
    [body] = charges(w.emu)
    assert body["payment_method_id"] == method
    assert await expiry(w, sid) == before + timedelta(days=30)
    async with w.shop.uow() as uow:
        payment = await uow.payments.get(f"r_{renewal_order_id(sid, before)}")
    assert payment is not None and payment.status is PaymentStatus.SUCCEEDED
    assert (await w.renew()).charging == 0
    assert await w.shop.verify() == []


async def test_a_declined_card_tells_the_customer(world: World) -> None:
    """A charge YooKassa cancels extends nothing, cancels the payment and tells the
    customer once."""
    w = world
    _, sid, method = await customer_with_saved_card(w, 32)
    w.emu.declined_methods[method] = "permission_revoked"
    before = await expiry(w, sid)
    w.shop.clock.advance(timedelta(days=4, hours=1))
    await w.renew()
    await w.worker.drain()
    assert await expiry(w, sid) == before
    failed = [k for k in await w.shop.jobs("notify_customer") if "renew-failed" in k]
    assert len(failed) == 1


async def test_switched_off_before_the_charge_charges_nothing(world: World) -> None:
    """Switching auto-renewal off after the scan but before the charge runs cancels it."""
    w = world
    _, sid, _ = await customer_with_saved_card(w, 33)
    w.shop.clock.advance(timedelta(days=4, hours=1))
    await w.renew()
    async with w.shop.uow() as uow:
        await uow.subscriptions.set_auto_renew(sid, False)
        await uow.commit()
    await w.worker.drain()
    assert charges(w.emu) == []
