"""Stray charges on every storage backend: a second charge of a paid order is recorded and
queued for return once, however often it is reported; the return job gives it back, is
retried while the provider is unavailable, parks when refused, and tells the customer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import attrs
import pytest

from tests.integration.shop import Shop, make_shop
from vpnshop.domain.outbox import JobKind
from vpnshop.ports.payments import (
    PaymentEvent,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.outbox import OutboxWorker
from vpnshop.services.outcome import Outcome
from vpnshop.services.stray_charges import RETURN_CHARGE, ReturnCharge, ReturnStrayCharge

Factory = Callable[[], UnitOfWork]
PAYER = 4242


@attrs.define
class Returner:
    """A ChargeReturner whose answers are scripted: an exception, or None (given back)."""

    answers: list[Exception | None] = attrs.Factory(list)
    returned: list[tuple[str, int]] = attrs.Factory(list)

    @property
    def name(self) -> str:
        return "fake"

    async def return_charge(self, external_id: str, payer_telegram_id: int) -> None:
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.returned.append((external_id, payer_telegram_id))


@pytest.fixture
async def shop(uow_factory: Factory) -> Shop:
    return await make_shop(uow_factory)


async def paid_twice(shop: Shop) -> tuple[PaymentEvent, PaymentEvent]:
    """A plan paid by one charge; the events of that charge and of a second one."""
    cid = await shop.customer(PAYER)
    link = await shop.checkout(cid, "fake", plan_code="month")
    paying = shop.gateway.event(payment_ref=link.payment_id, telegram_id=PAYER)
    assert await shop.confirm(paying) is Outcome.CONFIRMED
    second = attrs.evolve(paying, external_id="charge-2", dedupe_key="charge-2")
    assert await shop.confirm(second) is Outcome.UNKNOWN  # the payment holds the first
    return paying, second


def worker(shop: Shop, returner: Returner) -> OutboxWorker:
    return OutboxWorker(shop.deps, {RETURN_CHARGE: ReturnCharge(shop.deps, {"fake": returner})})


async def test_a_second_charge_is_queued_for_return_once(shop: Shop) -> None:
    """Reported three times, the second charge is audited, queued and told to the admins
    once; the charge that paid is held by the payment and queues nothing."""
    paying, second = await paid_twice(shop)
    stray = ReturnStrayCharge(shop.deps)
    assert [await stray(second) for _ in range(3)] == [Outcome.RETURNED] * 3
    assert await stray(paying) is Outcome.DUPLICATE
    assert await shop.jobs(RETURN_CHARGE) == ["stray:fake:charge-2"]
    assert await shop.jobs(JobKind.NOTIFY_ADMINS) == ["admins:stray:fake:charge-2"]
    async with shop.uow() as uow:
        audit = [a for a in await uow.audit.recent(100) if a.action == "payment.stray_charge"]
        payment = await uow.payments.get(str(paying.payment_ref))
    assert [a.details["external_id"] for a in audit] == ["charge-2"]
    assert (
        payment is not None
        and payment.external_id == paying.external_id
        and payment.refunded is None
    )


async def test_the_return_is_retried_then_the_customer_told(shop: Shop) -> None:
    """An unavailable provider is retried; once given back, the customer hears of it."""
    _, second = await paid_twice(shop)
    await ReturnStrayCharge(shop.deps)(second)
    returner = Returner([ProviderUnavailableError("down")])
    run = worker(shop, returner)
    assert (await run.run_once()).retried == 1
    assert returner.returned == []
    shop.clock.advance(timedelta(hours=1))
    assert (await run.run_once()).done == 1
    assert returner.returned == [("charge-2", PAYER)]
    assert "returned:fake:charge-2" in await shop.jobs(JobKind.NOTIFY_CUSTOMER)


async def test_a_refused_return_is_parked_with_its_reason(shop: Shop) -> None:
    """A provider that refuses parks the job for an admin; the customer is told nothing."""
    _, second = await paid_twice(shop)
    await ReturnStrayCharge(shop.deps)(second)
    returner = Returner([ProviderRejectedError("CHARGE_NOT_FOUND")])
    assert (await worker(shop, returner).run_once()).parked == 1
    async with shop.uow() as uow:
        [job] = await uow.outbox.parked()
    assert job.kind == RETURN_CHARGE and "CHARGE_NOT_FOUND" in (job.last_error or "")
    assert "returned:fake:charge-2" not in await shop.jobs(JobKind.NOTIFY_CUSTOMER)
