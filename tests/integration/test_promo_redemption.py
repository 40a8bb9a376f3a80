"""Redeeming typed promo codes on every backend: each kind's effect, each refusal, and
the limits under concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.integration.journeys import Journeys, make_journeys
from tests.integration.shop import ADMIN, START
from vpnshop.domain.errors import (
    PromoError,
    PromoExhaustedError,
    PromoExpiredError,
    PromoNotApplicableError,
    PromoUnknownError,
    PromoUsedError,
)
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.promo import PromoKind
from vpnshop.ports.storage import UnitOfWork

Factory = Callable[[], UnitOfWork]


@pytest.fixture
async def j(uow_factory: Factory) -> Journeys:
    return await make_journeys(uow_factory)


async def test_bonus_days_extend_the_subscription(j: Journeys) -> None:
    """A bonus-days code extends from max(now, expiry), counts one use, is audited and
    enqueues the panel update."""
    cid = await j.start(2000)
    await j.shop.extend(cid, 5, actor=ADMIN, reason="gift")
    await j.add_promo("DAYS10", PromoKind.BONUS_DAYS, 10)
    applied = await j.redeem(cid, " days10 ")
    assert applied.kind is PromoKind.BONUS_DAYS and applied.subscription is not None
    assert applied.subscription.expires_at == START + timedelta(days=15)
    jobs = await j.shop.jobs(JobKind.APPLY_SUBSCRIPTION)
    assert f"apply:{applied.subscription.id}:promo:DAYS10:{cid}" in jobs
    async with j.shop.uow() as uow:
        assert await uow.promos.redeemed("DAYS10", cid)
        promo = await uow.promos.get("DAYS10")
        assert promo is not None and promo.uses == 1
        assert "promo.redeem" in [a.action for a in await uow.audit.recent()]


async def test_balance_code_credits_through_the_ledger(j: Journeys) -> None:
    """A balance code is one promo-credit ledger entry, and the ledger still balances."""
    cid = await j.start(2001)
    await j.add_promo("GIFT100", PromoKind.BALANCE, 10000, currency="RUB")
    applied = await j.redeem(cid, "GIFT100")
    assert applied.credited == Money(10000, RUB)
    async with j.shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(10000, RUB)
        [entry] = await uow.ledger.entries(cid)
    assert entry.kind is EntryKind.PROMO_CREDIT and entry.reference == "promo:GIFT100"
    assert await j.shop.verify() == []


async def test_discount_is_kept_for_the_next_purchase(j: Journeys) -> None:
    """A discount code is kept on the customer and priced into their next order; once
    that order is paid, the once-only code is spent and the next order is full price."""
    cid = await j.start(2002)
    await j.add_promo("SALE20", PromoKind.DISCOUNT, 20)
    applied = await j.redeem(cid, "sale20")
    assert applied.discount_percent == 20
    kept = (await j.home(cid)).discount
    assert kept is not None and (kept.code, kept.percent) == ("SALE20", 20)
    link = await j.shop.checkout(cid, "fake", plan_code="month")
    assert link.order.promo_code == "SALE20"
    assert link.order.amount == Money(19900, RUB).discounted(20)
    await j.shop.confirm(j.shop.gateway.event(payment_ref=link.payment_id))
    again = await j.shop.checkout(cid, "fake", plan_code="month")
    assert again.order.amount == Money(19900, RUB) and again.order.promo_code is None
    assert (await j.home(cid)).discount is None
    with pytest.raises(PromoUsedError):
        await j.redeem(cid, "SALE20")


async def test_trial_extension_needs_a_running_trial(j: Journeys) -> None:
    """A trial extension is refused before the trial and after paying, and adds days to a
    trial in progress."""
    cid = await j.start(2003)
    await j.add_promo("TRIAL4", PromoKind.TRIAL_DAYS, 4, once_per_customer=False)
    with pytest.raises(PromoNotApplicableError) as before:
        await j.redeem(cid, "TRIAL4")
    assert before.value.reason == "trial_not_started"
    trial = await j.shop.trial(cid)
    applied = await j.redeem(cid, "TRIAL4")
    assert applied.subscription is not None and applied.subscription.is_trial
    assert applied.subscription.expires_at == trial.expires_at + timedelta(days=4)
    link = await j.shop.checkout(cid, "fake", plan_code="month")
    await j.shop.confirm(j.shop.gateway.event(payment_ref=link.payment_id))
    with pytest.raises(PromoNotApplicableError) as paid:
        await j.redeem(cid, "TRIAL4")
    assert paid.value.reason == "not_on_trial"
    async with j.shop.uow() as uow:
        promo = await uow.promos.get("TRIAL4")
    assert promo is not None and promo.uses == 1  # refusals count no use


async def test_each_refusal_has_its_own_error(j: Journeys) -> None:
    """Unknown, switched-off, expired, used and exhausted codes raise distinct errors and
    change nothing."""
    cid, other = await j.start(2004), await j.start(2005)
    await j.add_promo("OLD", PromoKind.BONUS_DAYS, 3, valid_until=START - timedelta(seconds=1))
    await j.add_promo("OFF", PromoKind.BONUS_DAYS, 3, active=False)
    await j.add_promo("ONE", PromoKind.BONUS_DAYS, 3, max_uses=1)
    await j.redeem(other, "ONE")
    await j.add_promo("MINE", PromoKind.BONUS_DAYS, 3)
    await j.redeem(cid, "MINE")
    cases: list[tuple[str, type[PromoError], str]] = [
        ("NOSUCH", PromoUnknownError, "promo_unknown"),
        ("<b>" + "X" * 5000, PromoUnknownError, "promo_unknown"),
        ("", PromoUnknownError, "promo_unknown"),
        ("OFF", PromoUnknownError, "promo_unknown"),
        ("OLD", PromoExpiredError, "promo_expired"),
        ("MINE", PromoUsedError, "promo_used"),
        ("ONE", PromoExhaustedError, "promo_exhausted"),
    ]
    async with j.shop.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    for code, error, error_code in cases:
        with pytest.raises(error) as refused:
            await j.redeem(cid, code)
        assert refused.value.code == error_code
    async with j.shop.uow() as uow:
        assert await uow.subscriptions.for_customer(cid) == [sub]
        one = await uow.promos.get("ONE")
    assert one is not None and one.uses == 1


async def test_concurrent_redemptions_respect_the_total_limit(j: Journeys) -> None:
    """Twenty customers redeeming a five-use balance code at once: five are credited,
    fifteen are told it is exhausted."""
    customers = [await j.start(2100 + i) for i in range(20)]
    await j.add_promo("FIVE", PromoKind.BALANCE, 500, currency="RUB", max_uses=5)

    async def redeem(cid: int) -> str:
        try:
            await j.redeem(cid, "FIVE")
        except PromoError as e:
            return e.code
        return "ok"

    outcomes = Counter(await asyncio.gather(*(redeem(c) for c in customers)))
    assert outcomes == {"ok": 5, "promo_exhausted": 15}
    async with j.shop.uow() as uow:
        promo = await uow.promos.get("FIVE")
        credited = [await uow.ledger.balance(c, RUB) for c in customers]
    assert promo is not None and promo.uses == 5
    assert sorted(m.minor for m in credited) == [0] * 15 + [500] * 5
    assert await j.shop.verify() == []


async def test_concurrent_redemptions_by_one_customer_apply_once(j: Journeys) -> None:
    """Ten concurrent redemptions of a once-only code by one customer apply it once."""
    cid = await j.start(2200)
    await j.add_promo("ONCE", PromoKind.BALANCE, 700, currency="RUB")

    async def redeem() -> str:
        try:
            await j.redeem(cid, "ONCE")
        except PromoError as e:
            return e.code
        return "ok"

    outcomes = Counter(await asyncio.gather(*(redeem() for _ in range(10))))
    assert outcomes == {"ok": 1, "promo_used": 9}
    async with j.shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(700, RUB)
        promo = await uow.promos.get("ONCE")
    assert promo is not None and promo.uses == 1
