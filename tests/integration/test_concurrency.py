"""The money rules under concurrency, on every backend: exactly once, never negative."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from tests.integration.shop import ADMIN, make_shop
from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import InsufficientFundsError, TrialAlreadyUsedError
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.outcome import Outcome

Factory = Callable[[], UnitOfWork]


async def test_fifty_concurrent_finalisations_credit_once(uow_factory: Factory) -> None:
    """50 concurrent confirmations of one payment: one credits, 49 are duplicates."""
    shop = await make_shop(uow_factory)
    cid = await shop.customer(200)
    link = await shop.checkout(cid, "fake", topup=Money(10000, RUB))
    event = shop.gateway.event(payment_ref=link.payment_id)
    outcomes = await asyncio.gather(*(shop.confirm(event) for _ in range(50)))
    assert Counter(outcomes) == {Outcome.CONFIRMED: 1, Outcome.DUPLICATE: 49}
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(10000, RUB)
        assert len(await uow.ledger.entries(cid)) == 1
        payment = await uow.payments.get(link.payment_id)
    assert payment is not None and payment.status is PaymentStatus.SUCCEEDED
    assert await shop.verify() == []


async def test_fifty_concurrent_plan_finalisations_extend_once(uow_factory: Factory) -> None:
    """50 concurrent confirmations of a plan payment extend the subscription once."""
    shop = await make_shop(uow_factory)
    cid = await shop.customer(201)
    link = await shop.checkout(cid, "fake", plan_code="month")
    event = shop.gateway.event(payment_ref=link.payment_id)
    outcomes = await asyncio.gather(*(shop.confirm(event) for _ in range(50)))
    assert outcomes.count(Outcome.CONFIRMED) == 1
    async with shop.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    assert sub.expires_at == shop.clock.now() + __import__("datetime").timedelta(days=30)


async def test_concurrent_debits_never_go_below_zero(uow_factory: Factory) -> None:
    """50 concurrent debits that together exceed the balance: the balance stays >= 0 and
    every accepted debit has exactly one ledger entry."""
    shop = await make_shop(uow_factory)
    cid = await shop.customer(202)
    await shop.credit(cid, Money(10000, RUB), kind=EntryKind.PROMO_CREDIT, key="seed", actor=ADMIN)

    async def debit(i: int) -> bool:
        try:
            return await shop.adjust(
                cid, Money(-300, RUB), admin=ADMIN, reason="load", key=f"debit-{i}"
            )
        except InsufficientFundsError:
            return False

    accepted = sum(await asyncio.gather(*(debit(i) for i in range(50))))
    assert accepted == 10000 // 300
    async with shop.uow() as uow:
        balance = await uow.ledger.balance(cid, RUB)
        entries = await uow.ledger.entries(cid, limit=1000)
    assert balance == Money(10000 - accepted * 300, RUB)
    assert balance.minor >= 0
    assert len([e for e in entries if e.kind is EntryKind.ADMIN_ADJUSTMENT]) == accepted
    assert await shop.verify() == []


async def test_concurrent_balance_purchases_never_overspend(uow_factory: Factory) -> None:
    """Ten concurrent purchases from a balance that covers three: three succeed, the rest
    are refused, and nothing is left on hold."""
    shop = await make_shop(uow_factory)
    cid = await shop.customer(203)
    await shop.credit(
        cid, Money(3 * 19900 + 50, RUB), kind=EntryKind.PROMO_CREDIT, key="seed", actor=ADMIN
    )

    async def buy(i: int) -> bool:
        try:
            await shop.pay_from_balance(
                cid, "month", RUB, actor=Actor.customer(203), order_id=f"o{i}"
            )
        except InsufficientFundsError:
            return False
        return True

    assert sum(await asyncio.gather(*(buy(i) for i in range(10)))) == 3
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(50, RUB)
        [sub] = await uow.subscriptions.for_customer(cid)
    assert sub.expires_at == shop.clock.now() + __import__("datetime").timedelta(days=90)
    assert await shop.verify() == []


async def test_twenty_concurrent_trials_give_one(uow_factory: Factory) -> None:
    """20 concurrent trial activations for one customer give exactly one trial."""
    shop = await make_shop(uow_factory)
    cid = await shop.customer(204)

    async def activate() -> bool:
        try:
            await shop.trial(cid)
        except TrialAlreadyUsedError:
            return False
        return True

    assert sum(await asyncio.gather(*(activate() for _ in range(20)))) == 1
    async with shop.uow() as uow:
        subs = await uow.subscriptions.for_customer(cid)
    assert len(subs) == 1 and subs[0].is_trial


@pytest.mark.parametrize("n", [20])
async def test_concurrent_registrations_make_one_customer(uow_factory: Factory, n: int) -> None:
    """Racing registrations of one Telegram user give one customer."""
    shop = await make_shop(uow_factory)
    results = await asyncio.gather(*(shop.register(205) for _ in range(n)))
    assert len({c.id for c, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_concurrent_first_payments_grant_the_referral_bonus_once(
    uow_factory: Factory,
) -> None:
    """Two payments of a referred customer confirmed at once: the first-payment bonus days
    go to the referrer once, whichever wins."""
    from datetime import timedelta

    from vpnshop.domain.referral import ReferralPolicy

    shop = await make_shop(uow_factory, ReferralPolicy(referrer_bonus_days=7))
    referrer = await shop.customer(206)
    referee = await shop.customer(207, referrer_telegram_id=206)
    links = [await shop.checkout(referee, "fake", topup=Money(20000, RUB)) for _ in range(2)]
    events = [shop.gateway.event(payment_ref=link.payment_id) for link in links]
    outcomes = await asyncio.gather(*(shop.confirm(e) for e in events))
    assert outcomes == [Outcome.CONFIRMED, Outcome.CONFIRMED]
    async with shop.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(referrer)
        assert await uow.ledger.balance(referee, RUB) == Money(40000, RUB)
    assert sub.expires_at == shop.clock.now() + timedelta(days=7)
