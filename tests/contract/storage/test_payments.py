"""The payments repository: round trips, the state machine as conditional updates,
refunds within the amount, and finalisation exactly once under concurrency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import attrs
import pytest

from tests.contract.storage.builders import (
    T0,
    Factory,
    add_customer,
    add_payment,
    new_payment,
    new_topup_order,
)
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import RUB, USD, XTR, Money
from vpnshop.domain.payment import TRANSITIONS, Payment, PaymentStatus


async def test_payment_round_trips_every_field(uow_factory: Factory) -> None:
    """A payment comes back exactly as stored, by id and by (provider, external id)."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    order = new_topup_order(customer.id, Money.of("10.50", USD))
    payment = new_payment(
        order,
        provider="cryptopay",
        status=PaymentStatus.PENDING,
        external_id="ext-1",
        confirmation_url="https://pay.example/ext-1",
        saved_method_id="pm-1",
        created_at=T0 + timedelta(microseconds=1),
        updated_at=T0 + timedelta(minutes=1),
    )
    async with uow_factory() as uow:
        await uow.orders.add(order)
        await uow.payments.add(payment)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.payments.get(payment.id) == payment
        assert await uow.payments.by_external_id("cryptopay", "ext-1") == payment
        assert await uow.payments.by_external_id("yookassa", "ext-1") is None
        assert await uow.payments.get("missing") is None


async def test_duplicate_provider_external_id_is_a_conflict(uow_factory: Factory) -> None:
    """Two payments with one (provider, external id) raise ConflictError; other providers
    may reuse the external id."""
    first = await add_payment(uow_factory, external_id="dup-1")
    order = new_topup_order(first.customer_id)
    async with uow_factory() as uow:
        await uow.orders.add(order)
        await uow.payments.add(new_payment(order, provider="cryptopay", external_id="dup-1"))
        await uow.commit()
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.payments.add(new_payment(order, external_id="dup-1"))


async def test_payment_transition_sets_optional_fields(uow_factory: Factory) -> None:
    """transition() moves the status, stamps updated_at and sets the given fields only."""
    payment = await add_payment(uow_factory)
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    async with uow_factory() as uow:
        pending = await uow.payments.transition(
            payment.id,
            PaymentStatus.PENDING,
            t1,
            external_id="ext-9",
            confirmation_url="https://pay.example/9",
        )
        await uow.commit()
    assert pending == attrs.evolve(
        payment,
        status=PaymentStatus.PENDING,
        updated_at=t1,
        external_id="ext-9",
        confirmation_url="https://pay.example/9",
    )
    async with uow_factory() as uow:
        done = await uow.payments.transition(
            payment.id, PaymentStatus.SUCCEEDED, t2, saved_method_id="pm-9"
        )
        await uow.commit()
    assert done == attrs.evolve(
        pending, status=PaymentStatus.SUCCEEDED, updated_at=t2, saved_method_id="pm-9"
    )
    async with uow_factory() as uow:
        assert await uow.payments.get(payment.id) == done
        assert await uow.payments.by_external_id("yookassa", "ext-9") == done
        assert await uow.payments.transition("missing", PaymentStatus.PENDING, t2) is None


async def test_payment_transitions_follow_the_state_machine(uow_factory: Factory) -> None:
    """Every (from, to) pair succeeds exactly when TRANSITIONS allows it; refused ones
    return None and leave the payment alone."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    cases: list[tuple[Payment, PaymentStatus]] = []
    async with uow_factory() as uow:
        for src in PaymentStatus:
            for dst in PaymentStatus:
                order = new_topup_order(customer.id)
                payment = new_payment(order, status=src)
                await uow.orders.add(order)
                await uow.payments.add(payment)
                cases.append((payment, dst))
        await uow.commit()
    later = T0 + timedelta(minutes=5)
    async with uow_factory() as uow:
        for payment, dst in cases:
            result = await uow.payments.transition(payment.id, dst, later)
            if dst in TRANSITIONS[payment.status]:
                assert result == attrs.evolve(payment, status=dst, updated_at=later), (
                    payment.status,
                    dst,
                )
            else:
                assert result is None, (payment.status, dst)
        await uow.commit()
    async with uow_factory() as uow:
        for payment, dst in cases:
            stored = await uow.payments.get(payment.id)
            assert stored is not None
            allowed = dst in TRANSITIONS[payment.status]
            assert stored.status is (dst if allowed else payment.status)


async def test_final_states_stick(uow_factory: Factory) -> None:
    """Once canceled, a payment can never succeed, even when asked twice."""
    payment = await add_payment(uow_factory)
    async with uow_factory() as uow:
        assert await uow.payments.transition(payment.id, PaymentStatus.CANCELED, T0)
        assert await uow.payments.transition(payment.id, PaymentStatus.SUCCEEDED, T0) is None
        await uow.commit()
    async with uow_factory() as uow:
        for status in PaymentStatus:
            assert await uow.payments.transition(payment.id, status, T0) is None
        stored = await uow.payments.get(payment.id)
    assert stored is not None
    assert stored.status is PaymentStatus.CANCELED


async def test_uncommitted_transition_is_rolled_back(uow_factory: Factory) -> None:
    """A transition in a unit of work that is not committed leaves the payment open."""
    payment = await add_payment(uow_factory)
    async with uow_factory() as uow:
        assert await uow.payments.transition(payment.id, PaymentStatus.SUCCEEDED, T0)
    async with uow_factory() as uow:
        assert await uow.payments.get(payment.id) == payment


async def test_add_refund_stays_within_the_amount(uow_factory: Factory) -> None:
    """Refunds add up to at most the amount; the whole amount makes the payment REFUNDED."""
    payment = await add_payment(uow_factory, status=PaymentStatus.SUCCEEDED)
    assert payment.amount == Money.of("500.00", RUB)
    t1 = T0 + timedelta(hours=1)
    async with uow_factory() as uow:
        part = await uow.payments.add_refund(payment.id, Money.of("200.00", RUB), t1)
        assert part is not None
        assert part.refunded == Money.of("200.00", RUB)
        assert part.status is PaymentStatus.SUCCEEDED
        assert part.updated_at == t1
        assert await uow.payments.add_refund(payment.id, Money.of("300.01", RUB), t1) is None
        assert await uow.payments.add_refund(payment.id, Money(100, XTR), t1) is None
        await uow.commit()
    async with uow_factory() as uow:
        rest = await uow.payments.add_refund(payment.id, Money.of("300.00", RUB), t1)
        assert rest is not None
        assert rest.refunded == payment.amount
        assert rest.status is PaymentStatus.REFUNDED
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.payments.get(payment.id) == rest
        assert await uow.payments.add_refund(payment.id, Money(1, RUB), t1) is None
        assert await uow.payments.add_refund("missing", Money(1, RUB), t1) is None


async def test_add_refund_needs_a_succeeded_payment(uow_factory: Factory) -> None:
    """A payment that is not SUCCEEDED refuses refunds."""
    payment = await add_payment(uow_factory, status=PaymentStatus.PENDING)
    async with uow_factory() as uow:
        assert await uow.payments.add_refund(payment.id, Money(100, RUB), T0) is None
        assert await uow.payments.get(payment.id) == payment


async def test_open_older_than_lists_old_open_payments_oldest_first(uow_factory: Factory) -> None:
    """open_older_than() returns created or pending payments before the cutoff, oldest
    first, at most *limit*."""
    customer = await add_customer(uow_factory)
    assert customer.id is not None
    specs = [
        (PaymentStatus.PENDING, 3),
        (PaymentStatus.CREATED, 1),
        (PaymentStatus.SUCCEEDED, 0),
        (PaymentStatus.EXPIRED, 0),
        (PaymentStatus.PENDING, 2),
        (PaymentStatus.PENDING, 20),  # after the cutoff
    ]
    made: dict[int, Payment] = {}
    async with uow_factory() as uow:
        for status, minutes in specs:
            order = new_topup_order(customer.id)
            payment = new_payment(order, status=status, created_at=T0 + timedelta(minutes=minutes))
            await uow.orders.add(order)
            await uow.payments.add(payment)
            made[minutes] = payment
        await uow.commit()
    cutoff = T0 + timedelta(minutes=10)
    async with uow_factory() as uow:
        found = await uow.payments.open_older_than(cutoff)
        limited = await uow.payments.open_older_than(cutoff, limit=2)
    assert found == [made[1], made[2], made[3]]
    assert limited == [made[1], made[2]]


async def test_recent_payments_newest_first(uow_factory: Factory) -> None:
    """recent() lists newest first, optionally for one customer, at most *limit*."""
    alice = await add_customer(uow_factory)
    bob = await add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    made: list[Payment] = []
    async with uow_factory() as uow:
        for i, owner in enumerate([alice.id, bob.id, alice.id, alice.id]):
            order = new_topup_order(owner)
            payment = new_payment(order, created_at=T0 + timedelta(minutes=i))
            await uow.orders.add(order)
            await uow.payments.add(payment)
            made.append(payment)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.payments.recent() == made[::-1]
        assert await uow.payments.recent(limit=2) == [made[3], made[2]]
        assert await uow.payments.recent(customer_id=alice.id) == [made[3], made[2], made[0]]
        assert await uow.payments.recent(customer_id=bob.id) == [made[1]]


async def test_concurrent_finalisation_succeeds_once(uow_factory: Factory) -> None:
    """Of 50 concurrent transitions of one payment to SUCCEEDED exactly one wins."""
    payment = await add_payment(uow_factory, status=PaymentStatus.PENDING)

    async def confirm() -> bool:
        async with uow_factory() as uow:
            done = await uow.payments.transition(payment.id, PaymentStatus.SUCCEEDED, T0)
            await uow.commit()
            return done is not None

    results = await asyncio.gather(*(confirm() for _ in range(50)))
    assert results.count(True) == 1
    async with uow_factory() as uow:
        stored = await uow.payments.get(payment.id)
    assert stored is not None
    assert stored.status is PaymentStatus.SUCCEEDED
