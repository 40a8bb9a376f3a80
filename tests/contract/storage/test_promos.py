"""The promos repository: unique codes, and redemptions within their limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
)
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.promo import PromoCode, PromoKind, PromoRedemption


def _promo(code: str, **changes: Any) -> PromoCode:
    base = PromoCode(code=code, kind=PromoKind.BONUS_DAYS, value=7, created_at=T0)
    return attrs.evolve(base, **changes)


async def test_promo_round_trips_every_field(uow_factory: Factory) -> None:
    """A promo code comes back exactly as stored, and update() replaces it."""
    promo = PromoCode(
        code="SPRING10",
        kind=PromoKind.DISCOUNT,
        value=10,
        currency=None,
        max_uses=100,
        uses=3,
        once_per_customer=False,
        valid_until=T0 + timedelta(days=30, microseconds=9),
        min_amount=Money.of("100.00", RUB),
        plan_codes=frozenset({"month", "year"}),
        active=True,
        created_at=T0,
    )
    balance = _promo("GIFT50", kind=PromoKind.BALANCE, value=5_000, currency="RUB")
    async with uow_factory() as uow:
        await uow.promos.add(promo)
        await uow.promos.add(balance)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.promos.get("SPRING10") == promo
        assert await uow.promos.get("GIFT50") == balance
        assert await uow.promos.get("NOPE") is None
        changed = attrs.evolve(promo, active=False, max_uses=None, plan_codes=frozenset())
        await uow.promos.update(changed)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.promos.get("SPRING10") == changed


async def test_duplicate_promo_code_is_a_conflict(uow_factory: Factory) -> None:
    """Adding a code that exists raises ConflictError."""
    async with uow_factory() as uow:
        await uow.promos.add(_promo("TWICE"))
        await uow.commit()
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.promos.add(_promo("TWICE", value=30))
    async with uow_factory() as uow:
        stored = await uow.promos.get("TWICE")
    assert stored is not None
    assert stored.value == 7


async def test_promo_list_by_code_and_active_only(uow_factory: Factory) -> None:
    """list() orders by code and can hide inactive codes."""
    async with uow_factory() as uow:
        for code, active in [("ZED", True), ("ALPHA", False), ("MID", True)]:
            await uow.promos.add(_promo(code, active=active))
        await uow.commit()
    async with uow_factory() as uow:
        assert [p.code for p in await uow.promos.list()] == ["ALPHA", "MID", "ZED"]
        assert [p.code for p in await uow.promos.list(active_only=True)] == ["MID", "ZED"]


async def test_promo_redeem_once_per_customer(uow_factory: Factory) -> None:
    """A once-only code is redeemed once per customer; each redemption counts a use."""
    alice = await add_customer(uow_factory)
    bob = await add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    async with uow_factory() as uow:
        await uow.promos.add(_promo("ONCE"))
        await uow.commit()
    async with uow_factory() as uow:
        ok = await uow.promos.redeem(
            PromoRedemption("ONCE", alice.id, T0), once_per_customer=True, max_uses=None
        )
        assert ok is True
        await uow.commit()
    async with uow_factory() as uow:
        again = await uow.promos.redeem(
            PromoRedemption("ONCE", alice.id, T0, order_id="o1"),
            once_per_customer=True,
            max_uses=None,
        )
        assert again is False
        other = await uow.promos.redeem(
            PromoRedemption("ONCE", bob.id, T0), once_per_customer=True, max_uses=None
        )
        assert other is True
        await uow.commit()
    async with uow_factory() as uow:
        stored = await uow.promos.get("ONCE")
        assert await uow.promos.redeemed("ONCE", alice.id)
        assert await uow.promos.redeemed("ONCE", bob.id)
        assert not await uow.promos.redeemed("OTHER", alice.id)
    assert stored is not None
    assert stored.uses == 2


async def test_promo_redeem_respects_max_uses(uow_factory: Factory) -> None:
    """A code with max_uses stops at that many redemptions; repeatable codes allow repeats."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        await uow.promos.add(_promo("LIMITED", max_uses=3, once_per_customer=False))
        await uow.commit()
    results = []
    for _ in range(5):
        async with uow_factory() as uow:
            results.append(
                await uow.promos.redeem(
                    PromoRedemption("LIMITED", customer.id, T0), once_per_customer=False, max_uses=3
                )
            )
            await uow.commit()
    assert results == [True, True, True, False, False]
    async with uow_factory() as uow:
        stored = await uow.promos.get("LIMITED")
    assert stored is not None
    assert stored.uses == 3


async def test_uncommitted_redemption_is_rolled_back(uow_factory: Factory) -> None:
    """A redemption that is not committed neither counts a use nor blocks the customer."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        await uow.promos.add(_promo("ROLLBACK"))
        await uow.commit()
    redemption = PromoRedemption("ROLLBACK", customer.id, T0)
    async with uow_factory() as uow:
        assert await uow.promos.redeem(redemption, once_per_customer=True, max_uses=1)
    async with uow_factory() as uow:
        stored = await uow.promos.get("ROLLBACK")
        assert stored is not None
        assert stored.uses == 0
        assert await uow.promos.redeem(redemption, once_per_customer=True, max_uses=1)
