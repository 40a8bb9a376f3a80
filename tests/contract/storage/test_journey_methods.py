"""The repository methods the customer journeys use (issue 11), on every backend:
customer fields that move only through their own methods, the trial flag, balances,
ledger totals and pages, and the auto-renew flag."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from tests.contract.storage.builders import T0, Factory, add_customer, new_customer, new_entry
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, USD, Money
from vpnshop.domain.subscription import Subscription


async def test_new_customer_fields_round_trip(uow_factory: Factory) -> None:
    """A customer added with a referral code, the unreachable flag and a kept discount
    comes back with them, and is found by its referral code."""
    wanted = new_customer(referral_code="Ab-9_xyz", unreachable=True, discount_code="SALE")
    async with uow_factory() as uow:
        stored = await uow.customers.add(wanted)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.customers.get(stored.id or 0) == attrs.evolve(wanted, id=stored.id)
        assert await uow.customers.by_referral_code("Ab-9_xyz") == stored
        assert await uow.customers.by_referral_code("ab-9_xyz") is None  # exact match
        assert await uow.customers.by_referral_code("nosuch") is None


async def test_referral_code_is_given_once_and_unique(uow_factory: Factory) -> None:
    """A code is set only on a customer without one; a code held by another is a
    ConflictError that leaves the transaction usable; an unknown customer gets None."""
    a, b = await add_customer(uow_factory), await add_customer(uow_factory)
    assert a.id is not None and b.id is not None
    async with uow_factory() as uow:
        assert await uow.customers.set_referral_code(a.id, "code-a") == "code-a"
        assert await uow.customers.set_referral_code(a.id, "code-x") == "code-a"
        with pytest.raises(ConflictError):
            await uow.customers.set_referral_code(b.id, "code-a")
        assert await uow.customers.set_referral_code(b.id, "code-b") == "code-b"
        assert await uow.customers.set_referral_code(10**9, "code-z") is None
        await uow.commit()
    async with uow_factory() as uow:
        got_a, got_b = await uow.customers.get(a.id), await uow.customers.get(b.id)
    assert got_a is not None and got_a.referral_code == "code-a"
    assert got_b is not None and got_b.referral_code == "code-b"


async def test_referrer_and_campaign_are_set_only_once(uow_factory: Factory) -> None:
    """The first referrer and the first campaign tag stay; later ones change nothing."""
    referrer, other = await add_customer(uow_factory), await add_customer(uow_factory)
    customer = await add_customer(uow_factory)
    assert customer.id is not None and referrer.id is not None and other.id is not None
    async with uow_factory() as uow:
        assert await uow.customers.set_referrer(customer.id, referrer.id)
        assert not await uow.customers.set_referrer(customer.id, other.id)
        assert await uow.customers.set_campaign(customer.id, "first")
        assert not await uow.customers.set_campaign(customer.id, "second")
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.customers.get(customer.id)
    assert got is not None and (got.referrer_id, got.campaign) == (referrer.id, "first")


async def test_settings_report_whether_they_changed(uow_factory: Factory) -> None:
    """Language, the unreachable flag and the kept discount return True only on change."""
    customer = await add_customer(uow_factory, language="ru")
    cid = customer.id
    assert cid is not None
    async with uow_factory() as uow:
        assert not await uow.customers.set_language(cid, "ru")
        assert await uow.customers.set_language(cid, "en")
        assert await uow.customers.set_unreachable(cid, True)
        assert not await uow.customers.set_unreachable(cid, True)
        assert await uow.customers.set_discount_code(cid, "SALE")
        assert not await uow.customers.set_discount_code(cid, "SALE")
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.customers.get(cid)
        assert got is not None
        assert (got.language, got.unreachable, got.discount_code) == ("en", True, "SALE")
        assert await uow.customers.set_discount_code(cid, None)
        assert not await uow.customers.set_discount_code(cid, None)
        assert await uow.customers.set_unreachable(cid, False)
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.customers.get(cid)
    assert got is not None and (got.unreachable, got.discount_code) == (False, None)


async def test_update_leaves_own_method_fields_alone(uow_factory: Factory) -> None:
    """``customers.update`` from a copy without the referral code, the unreachable flag
    and the kept discount does not clear them."""
    stale = await add_customer(uow_factory)
    assert stale.id is not None
    async with uow_factory() as uow:
        await uow.customers.set_referral_code(stale.id, "keep-me")
        await uow.customers.set_unreachable(stale.id, True)
        await uow.customers.set_discount_code(stale.id, "SALE")
        await uow.commit()
    async with uow_factory() as uow:
        await uow.customers.update(attrs.evolve(stale, username="renamed"))
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.customers.get(stale.id)
    assert got is not None and got.username == "renamed"
    assert (got.referral_code, got.unreachable, got.discount_code) == ("keep-me", True, "SALE")


async def test_trial_used(uow_factory: Factory) -> None:
    """``trials.used`` is False until the claim and again after an admin's reset."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        assert not await uow.trials.used(customer.id)
        assert await uow.trials.claim(customer.id, T0)
        assert await uow.trials.used(customer.id)
        await uow.trials.reset(customer.id)
        assert not await uow.trials.used(customer.id)


async def test_balances_totals_and_pages(uow_factory: Factory) -> None:
    """Balances per currency (zero ones too), totals of one kind per currency, and
    entries newest first from an offset."""
    customer = await add_customer(uow_factory)
    cid = customer.id
    assert cid is not None
    entries = [
        new_entry(cid, 1000, kind=EntryKind.REFERRAL_REWARD),
        new_entry(cid, 250, kind=EntryKind.REFERRAL_REWARD),
        new_entry(cid, 300, amount=Money(300, USD), kind=EntryKind.REFERRAL_REWARD),
        new_entry(cid, 500),
        new_entry(cid, -1750, kind=EntryKind.DEBIT),
    ]
    async with uow_factory() as uow:
        assert await uow.ledger.balances(cid) == []
        assert await uow.ledger.totals(cid, EntryKind.REFERRAL_REWARD) == []
        for entry in entries:
            assert await uow.ledger.post(entry)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.balances(cid) == [Money(0, RUB), Money(300, USD)]
        assert await uow.ledger.totals(cid, EntryKind.REFERRAL_REWARD) == [
            Money(1250, RUB),
            Money(300, USD),
        ]
        assert await uow.ledger.totals(cid, EntryKind.TOPUP) == [Money(500, RUB)]
        keys = [e.idempotency_key for e in entries]
        page = await uow.ledger.entries(cid, 2, 1)
        assert [e.idempotency_key for e in page] == [keys[3], keys[2]]
        assert await uow.ledger.entries(cid, 10, 5) == []


async def test_auto_renew_flag_alone(uow_factory: Factory) -> None:
    """``set_auto_renew`` reports a change and touches no other field."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        sub = await uow.subscriptions.add(Subscription.new(customer.id, T0).extended(30, T0))
        await uow.commit()
    assert sub.id is not None
    async with uow_factory() as uow:
        assert await uow.subscriptions.set_auto_renew(sub.id, True)
        assert not await uow.subscriptions.set_auto_renew(sub.id, True)
        assert not await uow.subscriptions.set_auto_renew(10**9, True)
        await uow.commit()
    async with uow_factory() as uow:
        got = await uow.subscriptions.get(sub.id)
    assert got == attrs.evolve(sub, auto_renew=True)
    assert got is not None and got.expires_at == T0 + timedelta(days=30)
