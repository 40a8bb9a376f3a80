"""The referrals repository: one referrer per referee, the bonus claimed once."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
)
from vpnshop.domain.referral import Referral


async def test_referrals_one_referrer_per_referee(uow_factory: Factory) -> None:
    """A referee gets one referrer; referrer_of and referees_of read the links."""
    ids = [(await add_customer(uow_factory)).id for _ in range(4)]
    a, b, c, d = [i for i in ids if i is not None]
    async with uow_factory() as uow:
        assert await uow.referrals.add(Referral(a, b, T0)) is True
        assert await uow.referrals.add(Referral(a, c, T0 + timedelta(seconds=1))) is True
        assert await uow.referrals.add(Referral(d, b, T0)) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.referrals.add(Referral(d, c, T0)) is False
        assert await uow.referrals.referrer_of(b) == a
        assert await uow.referrals.referrer_of(c) == a
        assert await uow.referrals.referrer_of(a) is None
        assert sorted(await uow.referrals.referees_of(a)) == sorted([b, c])
        assert await uow.referrals.referees_of(d) == []


async def test_referral_bonus_is_claimed_once(uow_factory: Factory) -> None:
    """claim_bonus() gives the referrer's id to the first call only, and nothing to a
    customer without a referrer; a rolled-back claim does not count."""
    ids = [(await add_customer(uow_factory)).id for _ in range(3)]
    a, b, c = [i for i in ids if i is not None]
    async with uow_factory() as uow:
        await uow.referrals.add(Referral(a, b, T0))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.referrals.claim_bonus(b, T0) == a  # not committed
    async with uow_factory() as uow:
        assert await uow.referrals.claim_bonus(b, T0) == a
        assert await uow.referrals.claim_bonus(b, T0) is None
        assert await uow.referrals.claim_bonus(c, T0) is None
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.referrals.claim_bonus(b, T0 + timedelta(days=1)) is None
