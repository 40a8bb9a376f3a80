"""The ledger and its holds: idempotent posts, no overdraft even under concurrency,
balances that match the entries, and holds settled once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import attrs
import pytest

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
    credit,
    new_entry,
    new_topup_order,
    unique_id,
)
from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import InsufficientFundsError
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import RUB, USD, XTR, Money


async def test_ledger_post_round_trips_and_moves_the_balance(uow_factory: Factory) -> None:
    """post() stores the entry with an id and changes the balance of its currency only."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    credit = new_entry(
        customer.id,
        10_000,
        "topup:p1",
        reference="p1",
        memo="top-up",
        actor=Actor.provider("yookassa"),
        created_at=T0 + timedelta(microseconds=5),
    )
    stars = LedgerEntry(
        customer_id=customer.id,
        amount=Money(50, XTR),
        kind=EntryKind.PROMO_CREDIT,
        idempotency_key="promo:x",
        actor=Actor.admin(99),
        created_at=T0,
    )
    debit = new_entry(
        customer.id,
        -2_500,
        "debit:o1",
        reference="o1",
        actor=Actor.customer(customer.telegram_id),
        created_at=T0,
    )
    async with uow_factory() as uow:
        assert await uow.ledger.post(credit) is True
        assert await uow.ledger.post(stars) is True
        assert await uow.ledger.post(debit) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.balance(customer.id, RUB) == Money(7_500, RUB)
        assert await uow.ledger.balance(customer.id, XTR) == Money(50, XTR)
        assert await uow.ledger.balance(customer.id, USD) == Money.zero(USD)
        entries = await uow.ledger.entries(customer.id)
        assert await uow.ledger.entries(customer.id, limit=1) == entries[:1]
        assert await uow.ledger.has_key("topup:p1") is True
        assert await uow.ledger.has_key("topup:p2") is False
        assert await uow.ledger.mismatches() == []
    assert [attrs.evolve(e, id=None) for e in entries] == [debit, stars, credit]
    ids = [e.id for e in entries]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == 3


async def test_ledger_post_is_idempotent_on_its_key(uow_factory: Factory) -> None:
    """A second entry with the same key returns False and changes nothing."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        assert await uow.ledger.post(new_entry(customer.id, 1_000, "same")) is True
        assert await uow.ledger.post(new_entry(customer.id, 1_000, "same")) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.post(new_entry(customer.id, 5_000, "same")) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.balance(customer.id, RUB) == Money(1_000, RUB)
        assert len(await uow.ledger.entries(customer.id)) == 1


async def test_insufficient_funds_changes_nothing(uow_factory: Factory) -> None:
    """A debit beyond the balance raises InsufficientFundsError and, after the rollback,
    nothing has changed."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    await credit(uow_factory, customer.id, 10_000)
    customer_id = customer.id

    async def overdraw() -> None:
        async with uow_factory() as uow:
            await uow.ledger.post(new_entry(customer_id, -10_001, "too-much"))
            await uow.commit()

    with pytest.raises(InsufficientFundsError):
        await overdraw()
    async with uow_factory() as uow:
        assert await uow.ledger.balance(customer.id, RUB) == Money(10_000, RUB)
        assert await uow.ledger.has_key("too-much") is False
        assert len(await uow.ledger.entries(customer.id)) == 1
        assert await uow.ledger.mismatches() == []


async def test_a_debit_may_empty_the_balance_exactly(uow_factory: Factory) -> None:
    """A debit of the whole balance is accepted and leaves zero; an empty balance refuses."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    await credit(uow_factory, customer.id, 3_000)
    async with uow_factory() as uow:
        assert await uow.ledger.post(new_entry(customer.id, -3_000)) is True
        await uow.commit()
    with pytest.raises(InsufficientFundsError):
        async with uow_factory() as uow:
            await uow.ledger.post(new_entry(customer.id, -1))
    async with uow_factory() as uow:
        assert await uow.ledger.balance(customer.id, RUB) == Money.zero(RUB)


async def test_no_mismatches_after_many_posts(uow_factory: Factory) -> None:
    """After many credits and debits over customers and currencies, balances equal sums."""
    customers = [await add_customer(uow_factory) for _ in range(3)]
    expected: dict[int, int] = {}
    for round_ in range(10):
        async with uow_factory() as uow:
            for c in customers:
                assert c.id is not None
                await uow.ledger.post(new_entry(c.id, 1_000 + round_))
                await uow.ledger.post(new_entry(c.id, -(300 + round_)))
                await uow.ledger.post(
                    LedgerEntry(
                        customer_id=c.id,
                        amount=Money(7, XTR),
                        kind=EntryKind.TOPUP,
                        idempotency_key=unique_id("xtr"),
                        actor=Actor.system(),
                        created_at=T0,
                    )
                )
                expected[c.id] = expected.get(c.id, 0) + 700
            await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.mismatches() == []
        for customer_id, minor in expected.items():
            assert await uow.ledger.balance(customer_id, RUB) == Money(minor, RUB)
            assert await uow.ledger.balance(customer_id, XTR) == Money(70, XTR)


async def test_concurrent_debits_never_overdraw(uow_factory: Factory) -> None:
    """50 concurrent debits worth more than the balance: the balance stays at or above zero,
    each accepted debit has its entry, and balances match the ledger."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    customer_id = customer.id
    await credit(uow_factory, customer_id, 1_000)

    async def debit(i: int) -> bool:
        try:
            async with uow_factory() as uow:
                await uow.ledger.post(new_entry(customer_id, -30, f"debit:{i}"))
                await uow.commit()
                return True
        except InsufficientFundsError:
            return False

    results = await asyncio.gather(*(debit(i) for i in range(50)))
    accepted = [i for i, ok in enumerate(results) if ok]
    assert len(accepted) == 33  # 33 * 30 = 990 <= 1000 < 34 * 30
    async with uow_factory() as uow:
        balance = await uow.ledger.balance(customer_id, RUB)
        assert balance == Money(1_000 - 30 * len(accepted), RUB)
        assert balance.minor >= 0
        for i in range(50):
            assert await uow.ledger.has_key(f"debit:{i}") is (i in accepted)
        assert len(await uow.ledger.entries(customer_id, limit=100)) == 1 + len(accepted)
        assert await uow.ledger.mismatches() == []


async def test_hold_round_trips_and_settles_once(uow_factory: Factory) -> None:
    """A held hold settles once (captured or released); later settles return None."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    order = new_topup_order(customer.id)
    one = Hold(
        id=unique_id("h"),
        customer_id=customer.id,
        amount=Money(9_900, RUB),
        order_id=order.id,
        created_at=T0,
    )
    two = attrs.evolve(one, id=unique_id("h"), amount=Money(100, XTR))
    async with uow_factory() as uow:
        await uow.orders.add(order)
        await uow.holds.add(one)
        await uow.holds.add(two)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.holds.get(one.id) == one
        assert await uow.holds.get("missing") is None
        captured = await uow.holds.settle(one.id, HoldStatus.CAPTURED)
        assert captured == attrs.evolve(one, status=HoldStatus.CAPTURED)
        assert await uow.holds.settle(one.id, HoldStatus.RELEASED) is None
        assert await uow.holds.settle(one.id, HoldStatus.CAPTURED) is None
        released = await uow.holds.settle(two.id, HoldStatus.RELEASED)
        assert released == attrs.evolve(two, status=HoldStatus.RELEASED)
        assert await uow.holds.settle("missing", HoldStatus.RELEASED) is None
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.holds.get(one.id) == captured
        assert await uow.holds.get(two.id) == released
        assert await uow.holds.settle(two.id, HoldStatus.CAPTURED) is None
