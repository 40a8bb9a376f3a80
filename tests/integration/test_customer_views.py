"""What the bot shows a customer, on every backend: the main menu's state, referral
stats and balance history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.integration.journeys import POLICY, Journeys, make_journeys
from tests.integration.shop import ADMIN, START
from vpnshop.domain.errors import NotFoundError, ValidationError
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, USD, Money
from vpnshop.domain.subscription import SubscriptionStatus
from vpnshop.ports.storage import UnitOfWork

Factory = Callable[[], UnitOfWork]


@pytest.fixture
async def j(uow_factory: Factory) -> Journeys:
    return await make_journeys(uow_factory)


async def test_home_of_a_new_customer(j: Journeys) -> None:
    """A new customer has no subscription, the trial on offer, no balance."""
    cid = await j.start(3000)
    home = await j.home(cid)
    assert home.subscriptions == () and home.subscription is None
    assert home.trial_available
    assert home.balances == () and home.balance(RUB) == Money(0, RUB)
    assert home.language == "ru"


async def test_home_reflects_trial_subscription_and_balance(j: Journeys) -> None:
    """After the trial, a credit and some time: status, days left, no trial offer,
    balances per currency and the auto-renew flag."""
    cid = await j.start(3001)
    sub = await j.shop.trial(cid)
    await j.shop.credit(cid, Money(1234, RUB), kind=EntryKind.PROMO_CREDIT, key="r", actor=ADMIN)
    await j.shop.credit(cid, Money(500, USD), kind=EntryKind.PROMO_CREDIT, key="u", actor=ADMIN)
    j.shop.clock.advance(timedelta(days=1, hours=1))
    home = await j.home(cid)
    assert not home.trial_available
    [summary] = home.subscriptions
    assert summary.id == sub.id and summary.is_trial and not summary.auto_renew
    assert summary.status is SubscriptionStatus.ACTIVE
    assert summary.expires_at == START + timedelta(days=3)
    assert summary.days_left == 1
    assert home.balances == (Money(1234, RUB), Money(500, USD))
    j.shop.clock.advance(timedelta(days=3))
    assert (await j.home(cid)).subscriptions[0].status is SubscriptionStatus.EXPIRED


async def test_home_without_trial_when_switched_off(j: Journeys) -> None:
    """A shop with the trial switched off never offers it."""
    from vpnshop.services.home import GetHome
    from vpnshop.services.subscriptions import TrialSettings

    cid = await j.start(3002)
    off = GetHome(j.shop.deps, TrialSettings(enabled=False))
    assert not (await off(cid)).trial_available
    with pytest.raises(NotFoundError):
        await off(999_999)


async def test_referral_stats_count_referees_and_sum_earnings(j: Journeys) -> None:
    """Stats give the code, the referees, the referral rewards per currency and the policy."""
    first = await j.onboard(3010)
    code = first.customer.referral_code
    referrer = first.customer.id
    assert code is not None and referrer is not None
    referees = [await j.start(3011 + i, f"ref_{code}") for i in range(3)]
    for referee in referees[:2]:
        link = await j.shop.checkout(referee, "fake", plan_code="month")
        await j.shop.confirm(j.shop.gateway.event(payment_ref=link.payment_id))
    await j.shop.credit(referrer, Money(999, RUB), kind=EntryKind.TOPUP, key="x", actor=ADMIN)
    stats = await j.referral_stats(referrer)
    assert stats.code == code
    assert stats.referees == 3
    assert stats.earnings == (Money(19900, RUB).percent(10) * 2,)
    assert stats.policy == POLICY


async def test_referral_stats_give_a_code_to_a_customer_without_one(j: Journeys) -> None:
    """A customer registered without /start gets their code on first asking, kept after."""
    cid = await j.shop.customer(3020)
    stats = await j.referral_stats(cid)
    assert stats.code and stats.referees == 0 and stats.earnings == ()
    assert (await j.referral_stats(cid)).code == stats.code


async def test_balance_history_pages_newest_first(j: Journeys) -> None:
    """History lists kind, amount, reference and time, newest first, a page at a time."""
    cid = await j.start(3030)
    for i in range(7):
        await j.shop.credit(
            cid,
            Money(100 + i, RUB),
            kind=EntryKind.PROMO_CREDIT,
            key=f"k{i}",
            actor=ADMIN,
            reference=f"ref{i}",
        )
        j.shop.clock.advance(timedelta(minutes=1))
    first = await j.history(cid, page=0, page_size=3)
    assert [e.amount.minor for e in first.entries] == [106, 105, 104]
    assert first.has_next and not first.has_previous
    assert first.entries[0].kind is EntryKind.PROMO_CREDIT
    assert first.entries[0].reference == "ref6"
    assert first.entries[0].created_at == START + timedelta(minutes=6)
    last = await j.history(cid, page=2, page_size=3)
    assert [e.amount.minor for e in last.entries] == [100] and not last.has_next
    exact = await j.history(cid, page=0, page_size=7)
    assert len(exact.entries) == 7 and not exact.has_next
    assert (await j.history(cid, page=5, page_size=3)).entries == ()


async def test_balance_history_refuses_bad_pages(j: Journeys) -> None:
    """A negative page, a zero or oversized page size, and an unknown customer are refused."""
    cid = await j.start(3031)
    for page, size in ((-1, 10), (0, 0), (0, 51)):
        with pytest.raises(ValidationError):
            await j.history(cid, page=page, page_size=size)
    with pytest.raises(NotFoundError):
        await j.history(999_999)
