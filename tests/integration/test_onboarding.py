"""/start with deep links on every backend: referral, promo and campaign attribution."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.integration.journeys import Journeys, make_journeys
from tests.integration.shop import START
from vpnshop.domain.errors import PromoUnknownError
from vpnshop.domain.promo import PromoKind
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.onboarding import ReferralOutcome

Factory = Callable[[], UnitOfWork]


@pytest.fixture
async def j(uow_factory: Factory) -> Journeys:
    return await make_journeys(uow_factory)


async def code_of(j: Journeys, telegram_id: int) -> str:
    code = (await j.onboard(telegram_id)).customer.referral_code
    assert code
    return code


async def test_first_start_gives_a_referral_code_once(j: Journeys) -> None:
    """Every customer gets their own referral code on /start, and keeps it on the next."""
    first = await j.onboard(1000, language_code="en", username="ann")
    again = await j.onboard(1000)
    assert first.created and not again.created
    assert first.customer.referral_code and first.customer.referral_code != "1000"
    assert again.customer.referral_code == first.customer.referral_code
    assert first.customer.language == "en"


async def test_referral_link_binds_the_referrer(j: Journeys) -> None:
    """ref_<code> of another customer makes them the new customer's referrer, audited."""
    code = await code_of(j, 1001)
    result = await j.onboard(1002, payload=f"ref_{code}")
    assert result.referral is ReferralOutcome.BOUND
    async with j.shop.uow() as uow:
        referrer = await uow.customers.by_telegram_id(1001)
        assert referrer is not None and referrer.id is not None
        assert result.customer.referrer_id == referrer.id
        assert await uow.referrals.referrer_of(result.customer.id or 0) == referrer.id
        subject = f"customer:{result.customer.id}"
        actions = [a.action for a in await uow.audit.recent(subject=subject)]
    assert "customer.attribute" in actions


async def test_repeated_start_never_changes_the_referrer(j: Journeys) -> None:
    """A second referral link for a customer who has a referrer changes nothing."""
    first, second = await code_of(j, 1010), await code_of(j, 1011)
    bound = await j.onboard(1012, payload=f"ref_{first}")
    again = await j.onboard(1012, payload=f"ref_{second}")
    assert again.referral is ReferralOutcome.KEPT
    assert again.customer.referrer_id == bound.customer.referrer_id
    async with j.shop.uow() as uow:
        assert await uow.referrals.referrer_of(bound.customer.id or 0) == bound.customer.referrer_id


async def test_self_referral_and_cycles_are_refused(j: Journeys) -> None:
    """A customer's own link and a link that would close a cycle bind nothing."""
    a_code = await code_of(j, 1020)
    assert (await j.onboard(1020, payload=f"ref_{a_code}")).referral is ReferralOutcome.REFUSED
    b = await j.onboard(1021, payload=f"ref_{a_code}")
    assert b.referral is ReferralOutcome.BOUND
    assert b.customer.referral_code is not None
    back = await j.onboard(1020, payload=f"ref_{b.customer.referral_code}")
    assert back.referral is ReferralOutcome.REFUSED
    assert back.customer.referrer_id is None


async def test_unknown_code_and_a_paying_customer_bind_nothing(j: Journeys) -> None:
    """An unknown code binds nothing; nor does a link pressed by a customer who has paid."""
    code = await code_of(j, 1030)
    assert (await j.onboard(1031, payload="ref_nosuchcode")).referral is ReferralOutcome.UNKNOWN
    payer = await j.start(1032)
    link = await j.shop.checkout(payer, "fake", plan_code="month")
    await j.shop.confirm(j.shop.gateway.event(payment_ref=link.payment_id))
    late = await j.onboard(1032, payload=f"ref_{code}")
    assert late.referral is ReferralOutcome.TOO_LATE
    assert late.customer.referrer_id is None


async def test_first_campaign_tag_wins(j: Journeys) -> None:
    """A campaign tag is stored once; later tags and malformed payloads change nothing."""
    first = await j.onboard(1040, payload="autumn_ads")
    assert first.campaign_stored and first.customer.campaign == "autumn_ads"
    later = await j.onboard(1040, payload="winter_ads")
    assert not later.campaign_stored and later.customer.campaign == "autumn_ads"
    odd = await j.onboard(1041, payload="<script>")
    assert odd.link is None and odd.customer.campaign is None


async def test_promo_link_applies_the_code(j: Journeys) -> None:
    """promo_<code> redeems it; an unknown code is reported, and the user still gets in."""
    await j.add_promo("WELCOME7", PromoKind.BONUS_DAYS, 7)
    result = await j.onboard(1050, payload="promo_welcome7")
    assert result.promo is not None and result.promo.subscription is not None
    assert result.promo.subscription.expires_at == START + timedelta(days=7)
    bad = await j.onboard(1051, payload="promo_NOPE")
    assert isinstance(bad.promo_error, PromoUnknownError)
    assert bad.created and bad.customer.id is not None


async def test_racing_links_bind_one_referrer(j: Journeys) -> None:
    """Ten concurrent /start of one new user with ten referral links bind exactly one."""
    codes = [await code_of(j, 1100 + i) for i in range(10)]
    results = await asyncio.gather(*(j.onboard(1200, payload=f"ref_{c}") for c in codes))
    outcomes = Counter(r.referral for r in results)
    assert outcomes[ReferralOutcome.BOUND] == 1
    assert outcomes[ReferralOutcome.BOUND] + outcomes[ReferralOutcome.KEPT] == 10
    async with j.shop.uow() as uow:
        customer = await uow.customers.by_telegram_id(1200)
        assert customer is not None and customer.id is not None
        assert customer.referrer_id == await uow.referrals.referrer_of(customer.id)
        assert await uow.customers.count() == 11


async def test_opposite_links_at_once_make_no_cycle(j: Journeys) -> None:
    """Pairs of customers pressing each other's link at the same moment never refer each
    other: in every pair one link binds and the other is refused."""
    pairs = [(1300 + 2 * i, 1301 + 2 * i) for i in range(5)]
    codes = {tg: await code_of(j, tg) for pair in pairs for tg in pair}
    results = await asyncio.gather(
        *(j.onboard(a, payload=f"ref_{codes[b]}") for a, b in pairs),
        *(j.onboard(b, payload=f"ref_{codes[a]}") for a, b in pairs),
    )
    forward, backward = results[: len(pairs)], results[len(pairs) :]
    for there, back in zip(forward, backward, strict=True):
        assert sorted([there.referral or "", back.referral or ""]) == ["bound", "refused"]
