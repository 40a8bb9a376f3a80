"""A customer's settings on every backend: language, auto-renewal, reachability."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from tests.integration.journeys import Journeys, make_journeys
from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import NotFoundError, ValidationError
from vpnshop.ports.storage import UnitOfWork

Factory = Callable[[], UnitOfWork]


@pytest.fixture
async def j(uow_factory: Factory) -> Journeys:
    return await make_journeys(uow_factory)


async def actions(j: Journeys, subject: str) -> list[str]:
    async with j.shop.uow() as uow:
        return [a.action for a in await uow.audit.recent(subject=subject)]


async def test_language_is_stored_once_and_audited_once(j: Journeys) -> None:
    """Switching to en changes and audits once; switching again changes nothing."""
    cid = await j.start(5000)
    assert await j.set_language(cid, "en")
    assert not await j.set_language(cid, "en")
    assert (await j.home(cid)).language == "en"
    assert (await actions(j, f"customer:{cid}")).count("customer.language") == 1


async def test_only_ru_and_en_are_languages(j: Journeys) -> None:
    """Any language but ru and en is refused and changes nothing."""
    cid = await j.start(5001)
    for bad in ("de", "EN", "", "ru-RU"):
        with pytest.raises(ValidationError):
            await j.set_language(cid, bad)
    assert (await j.home(cid)).language == "ru"
    with pytest.raises(NotFoundError):
        await j.set_language(999_999, "en")


async def test_auto_renew_toggles_one_flag(j: Journeys) -> None:
    """Auto-renewal is stored per subscription, idempotent, audited on change, and
    touches nothing else of the subscription."""
    cid = await j.start(5002)
    sub = await j.shop.trial(cid)
    assert sub.id is not None
    assert await j.set_auto_renew(cid, sub.id, True)
    assert not await j.set_auto_renew(cid, sub.id, True)
    async with j.shop.uow() as uow:
        stored = await uow.subscriptions.get(sub.id)
    assert stored == attrs.evolve(sub, auto_renew=True)
    assert (await j.home(cid)).subscriptions[0].auto_renew
    assert await j.set_auto_renew(cid, sub.id, False)
    assert (await actions(j, f"subscription:{sub.id}")).count("subscription.auto_renew") == 2


async def test_reachability_is_idempotent_and_audited(j: Journeys) -> None:
    """Blocking marks the customer unreachable once; unblocking marks them reachable."""
    cid = await j.start(5003)
    assert await j.mark_reachable(cid, False)
    assert not await j.mark_reachable(cid, False)
    async with j.shop.uow() as uow:
        customer = await uow.customers.get(cid)
    assert customer is not None and customer.unreachable
    assert await j.mark_reachable(cid, True, actor=Actor.customer(5003))
    assert await actions(j, f"customer:{cid}") == [
        "customer.reachable",
        "customer.unreachable",
        "customer.register",
    ]


async def test_a_stale_customer_update_keeps_the_own_method_fields(j: Journeys) -> None:
    """An update from a copy read before the referral code, the unreachable flag and the
    kept discount were set (an admin's ban) does not undo them."""
    cid = await j.shop.customer(5004)
    async with j.shop.uow() as uow:
        stale = await uow.customers.get(cid)
    assert stale is not None and stale.referral_code is None
    code = (await j.referral_stats(cid)).code
    await j.mark_reachable(cid, False)
    async with j.shop.uow() as uow:
        assert await uow.customers.set_discount_code(cid, "SALE")
        await uow.customers.update(stale.banned_as(True))
        await uow.commit()
    async with j.shop.uow() as uow:
        now = await uow.customers.get(cid)
    assert now is not None and now.banned
    assert now.unreachable and now.discount_code == "SALE"
    assert now.referral_code == code
