"""The storage contract: the same tests against every backend of ``vpnshop.ports.storage``.

Every test uses only the ``uow_factory`` fixture (a zero-argument callable returning a
fresh unit of work on a fresh, empty database), so that it runs unchanged on the
in-memory store, SQLite and PostgreSQL. Rows are created in the order foreign keys need
(customer, plan, order, payment...) and every time is timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from vpnshop.domain.actor import Actor
from vpnshop.domain.audit import AuditEntry
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ConflictError, InsufficientFundsError
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import RUB, USD, XTR, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind, JobStatus, OutboxJob
from vpnshop.domain.panel import PanelStatus, PanelUserView
from vpnshop.domain.payment import TRANSITIONS, Payment, PaymentStatus
from vpnshop.domain.plan import GIB, Plan, TrafficReset
from vpnshop.domain.promo import PromoCode, PromoKind, PromoRedemption
from vpnshop.domain.referral import Referral
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage import UnitOfWork

Factory = Callable[[], UnitOfWork]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_telegram_ids = itertools.count(7_000_000_001)
_serial = itertools.count(1)


# -- builders ---------------------------------------------------------------------------


def _uid(prefix: str) -> str:
    return f"{prefix}{next(_serial):08d}"


def _customer(**changes: Any) -> Customer:
    base = Customer(id=None, telegram_id=next(_telegram_ids), created_at=T0)
    return attrs.evolve(base, **changes)


def _plan(code: str = "month", **changes: Any) -> Plan:
    base = Plan(
        code=code,
        names={"ru": "Месяц", "en": "Month"},
        duration_days=30,
        prices={"RUB": Money.of("199.00", RUB), "XTR": Money(150, XTR)},
        traffic_limit_bytes=100 * GIB,
        traffic_reset=TrafficReset.MONTH,
        device_limit=3,
        squads=("sq-a", "sq-b"),
        active=True,
        sort_order=10,
    )
    return attrs.evolve(base, **changes)


def _topup_order(customer_id: int, amount: Money | None = None) -> Order:
    amount = amount or Money.of("500.00", RUB)
    return Order(
        id=_uid("o"),
        customer_id=customer_id,
        kind=OrderKind.TOPUP,
        amount=amount,
        list_price=amount,
        created_at=T0,
    )


def _payment(order: Order, **changes: Any) -> Payment:
    base = Payment(
        id=_uid("p"),
        order_id=order.id,
        customer_id=order.customer_id,
        provider="yookassa",
        amount=order.amount,
        created_at=T0,
        updated_at=T0,
    )
    return attrs.evolve(base, **changes)


def _entry(customer_id: int, minor: int, key: str | None = None, **changes: Any) -> LedgerEntry:
    base = LedgerEntry(
        customer_id=customer_id,
        amount=Money(minor, RUB),
        kind=EntryKind.TOPUP if minor > 0 else EntryKind.DEBIT,
        idempotency_key=key or _uid("k"),
        actor=Actor.system("test"),
        created_at=T0,
    )
    return attrs.evolve(base, **changes)


def _job(
    key: str | None = None,
    due_at: datetime = T0,
    kind: str = JobKind.NOTIFY_CUSTOMER,
    **changes: Any,
) -> OutboxJob:
    base = OutboxJob(
        kind=kind,
        payload={"chat_id": 42, "text": "hello"},
        dedupe_key=key or _uid("d"),
        due_at=due_at,
        created_at=T0,
    )
    return attrs.evolve(base, **changes)


async def _add_customer(uow_factory: Factory, **changes: Any) -> Customer:
    async with uow_factory() as uow:
        customer = await uow.customers.add(_customer(**changes))
        await uow.commit()
    return customer


async def _add_payment(uow_factory: Factory, **changes: Any) -> Payment:
    """A customer, a top-up order and a payment for it, committed."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    order = _topup_order(customer.id)
    payment = _payment(order, **changes)
    async with uow_factory() as uow:
        await uow.orders.add(order)
        await uow.payments.add(payment)
        await uow.commit()
    return payment


async def _credit(uow_factory: Factory, customer_id: int, minor: int) -> None:
    async with uow_factory() as uow:
        assert await uow.ledger.post(_entry(customer_id, minor))
        await uow.commit()


# -- the unit of work -------------------------------------------------------------------


async def test_changes_without_commit_are_rolled_back(uow_factory: Factory) -> None:
    """Leaving the block without commit() keeps nothing."""
    async with uow_factory() as uow:
        await uow.customers.add(_customer(telegram_id=111))
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(111) is None
        assert await uow.customers.count() == 0


async def test_an_exception_rolls_back(uow_factory: Factory) -> None:
    """Leaving the block by an exception keeps nothing, and the exception propagates."""

    async def fail() -> None:
        async with uow_factory() as uow:
            await uow.customers.add(_customer(telegram_id=112))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail()
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(112) is None


async def test_commit_publishes_and_later_changes_need_another_commit(
    uow_factory: Factory,
) -> None:
    """commit() keeps what came before it; changes after it are lost without a new commit."""
    async with uow_factory() as uow:
        await uow.customers.add(_customer(telegram_id=113))
        await uow.commit()
        await uow.customers.add(_customer(telegram_id=114))
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(113) is not None
        assert await uow.customers.by_telegram_id(114) is None


async def test_explicit_rollback_discards_and_the_unit_goes_on(uow_factory: Factory) -> None:
    """rollback() discards the changes so far; later changes can still be committed."""
    async with uow_factory() as uow:
        await uow.customers.add(_customer(telegram_id=115))
        await uow.rollback()
        await uow.customers.add(_customer(telegram_id=116))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.customers.by_telegram_id(115) is None
        assert await uow.customers.by_telegram_id(116) is not None


# -- customers --------------------------------------------------------------------------


async def test_customer_round_trips_every_field(uow_factory: Factory) -> None:
    """A customer comes back with a store-assigned id and every field as stored."""
    referrer = await _add_customer(uow_factory)
    wanted = _customer(
        language="en",
        username="alice",
        referrer_id=referrer.id,
        campaign="spring",
        banned=True,
        deleted_at=T0 + timedelta(days=1, microseconds=123),
        created_at=T0 + timedelta(seconds=5),
    )
    async with uow_factory() as uow:
        stored = await uow.customers.add(wanted)
        await uow.commit()
    assert isinstance(stored.id, int)
    assert stored.id != referrer.id
    assert stored == attrs.evolve(wanted, id=stored.id)
    async with uow_factory() as uow:
        got = await uow.customers.get(stored.id)
        by_tg = await uow.customers.by_telegram_id(wanted.telegram_id)
        assert await uow.customers.count() == 2
        assert await uow.customers.get(stored.id + 1000) is None
        assert await uow.customers.by_telegram_id(1) is None
    assert got == stored
    assert by_tg == stored
    assert got is not None
    assert got.deleted_at is not None
    assert got.deleted_at.utcoffset() == timedelta(0)


async def test_customer_update_round_trips(uow_factory: Factory) -> None:
    """update() replaces the stored customer's fields."""
    customer = await _add_customer(uow_factory, username="bob")
    assert customer.id is not None
    changed = attrs.evolve(
        customer.banned_as(True).soft_deleted(T0), username="bobby", language="en", campaign="ads"
    )
    async with uow_factory() as uow:
        await uow.customers.update(changed)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.customers.get(customer.id) == changed


async def test_duplicate_telegram_id_is_a_conflict(uow_factory: Factory) -> None:
    """Adding a second customer with a taken Telegram id raises ConflictError."""
    first = await _add_customer(uow_factory)
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.customers.add(_customer(telegram_id=first.telegram_id))
    async with uow_factory() as uow:
        assert await uow.customers.count() == 1


async def test_update_to_a_taken_telegram_id_is_a_conflict(uow_factory: Factory) -> None:
    """Changing a customer's Telegram id to another customer's raises ConflictError."""
    first = await _add_customer(uow_factory)
    second = await _add_customer(uow_factory)
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.customers.update(attrs.evolve(second, telegram_id=first.telegram_id))
    async with uow_factory() as uow:
        assert second.id is not None
        assert await uow.customers.get(second.id) == second


# -- plans ------------------------------------------------------------------------------


async def test_plan_upsert_is_idempotent_and_round_trips(uow_factory: Factory) -> None:
    """upsert() is True on insert and on change, False when nothing changed."""
    plan = _plan()
    async with uow_factory() as uow:
        assert await uow.plans.upsert(plan) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.plans.get("month") == plan
        assert await uow.plans.upsert(plan) is False
        changed = attrs.evolve(plan, prices={"RUB": Money.of("249.00", RUB)}, device_limit=None)
        assert await uow.plans.upsert(changed) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.plans.get("month") == changed
        assert await uow.plans.get("missing") is None


async def test_two_loads_of_a_new_plan_at_once_both_succeed(uow_factory: Factory) -> None:
    """Two transactions upsert the same new plan at once (two replicas loading the plans
    file): neither fails, and the later commit's version is the one stored."""
    first, second = _plan(), attrs.evolve(_plan(), device_limit=7)
    first_written = asyncio.Event()

    async def load_first() -> None:
        async with uow_factory() as uow:
            assert await uow.plans.upsert(first) is True
            first_written.set()
            await asyncio.sleep(0.2)  # the second tries its insert against this open row
            await uow.commit()

    async def load_second() -> None:
        await first_written.wait()
        async with uow_factory() as uow:
            assert await uow.plans.upsert(second) is True
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(load_first(), load_second()), 30)
    async with uow_factory() as uow:
        assert await uow.plans.get("month") == second


async def test_plan_list_orders_by_sort_order_then_code(uow_factory: Factory) -> None:
    """list() orders by sort order, then code, and hides inactive plans unless asked."""
    plans = [
        _plan("year", sort_order=30),
        _plan("b-month", sort_order=10),
        _plan("a-month", sort_order=10),
        _plan("old", sort_order=0, active=False),
        _plan("week", sort_order=5, traffic_limit_bytes=0, squads=(), device_limit=None),
    ]
    async with uow_factory() as uow:
        for plan in plans:
            await uow.plans.upsert(plan)
        await uow.commit()
    async with uow_factory() as uow:
        active = await uow.plans.list()
        every = await uow.plans.list(active_only=False)
    assert [p.code for p in active] == ["week", "a-month", "b-month", "year"]
    assert [p.code for p in every] == ["old", "week", "a-month", "b-month", "year"]
    assert every[1] == plans[4]


# -- subscriptions ----------------------------------------------------------------------


async def test_subscription_round_trips_every_field(uow_factory: Factory) -> None:
    """A subscription comes back with a store-assigned id and every field as stored."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    wanted = Subscription(
        id=None,
        customer_id=customer.id,
        plan_code="month",
        expires_at=T0 + timedelta(days=30, microseconds=1),
        traffic_limit_bytes=50 * GIB,
        traffic_reset=TrafficReset.WEEK,
        device_limit=2,
        squads=("sq-1", "sq-2"),
        is_trial=True,
        enabled=False,
        auto_renew=True,
        panel_key="42",
        panel_username="vpn_42",
        subscription_url="https://panel.example/sub/abc",
        created_at=T0,
        updated_at=T0 + timedelta(hours=1),
    )
    async with uow_factory() as uow:
        await uow.plans.upsert(_plan())
        stored = await uow.subscriptions.add(wanted)
        await uow.commit()
    assert isinstance(stored.id, int)
    assert stored == attrs.evolve(wanted, id=stored.id)
    async with uow_factory() as uow:
        assert await uow.subscriptions.get(stored.id) == stored
        assert await uow.subscriptions.get(stored.id, for_update=True) == stored
        assert await uow.subscriptions.get(stored.id + 1000) is None


async def test_one_subscription_per_customer_and_update(uow_factory: Factory) -> None:
    """A customer has at most one subscription (a second add is a conflict that changes
    nothing); for_customer() lists only that customer's; update() sticks."""
    alice = await _add_customer(uow_factory)
    bob = await _add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    async with uow_factory() as uow:
        first = await uow.subscriptions.add(Subscription.new(alice.id, T0).extended(3, T0))
        await uow.subscriptions.add(attrs.evolve(Subscription.new(bob.id, T0), updated_at=T0))
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(ConflictError):
            await uow.subscriptions.add(Subscription.new(alice.id, T0).extended(9, T0))
    extended = first.extended(30, T0 + timedelta(hours=2))
    async with uow_factory() as uow:
        await uow.subscriptions.update(extended)
        await uow.commit()
    async with uow_factory() as uow:
        mine = await uow.subscriptions.for_customer(alice.id)
        assert await uow.subscriptions.for_customer(alice.id + bob.id + 1000) == []
    assert mine == [extended]


async def test_set_panel_link_touches_only_the_link(uow_factory: Factory) -> None:
    """set_panel_link() records the panel user and keeps every other field as stored."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        sub = await uow.subscriptions.add(
            attrs.evolve(Subscription.new(customer.id, T0).extended(30, T0), auto_renew=True)
        )
        await uow.commit()
    assert sub.id is not None
    extended = sub.extended(7, T0 + timedelta(minutes=1))
    async with uow_factory() as uow:
        await uow.subscriptions.update(extended)
        await uow.subscriptions.set_panel_link(
            sub.id,
            panel_key="77",
            panel_username="vpn_77",
            subscription_url="https://panel.example/sub/77",
        )
        await uow.commit()
    async with uow_factory() as uow:
        stored = await uow.subscriptions.get(sub.id)
    assert stored == attrs.evolve(
        extended,
        panel_key="77",
        panel_username="vpn_77",
        subscription_url="https://panel.example/sub/77",
    )


async def test_customer_lock_then_change_commits(uow_factory: Factory) -> None:
    """lock() on a customer is allowed inside a transaction and changes nothing by itself."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        await uow.customers.lock(customer.id)
        await uow.customers.update(attrs.evolve(customer, username="locked"))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.customers.lock(customer.id)
        got = await uow.customers.get(customer.id)
    assert got == attrs.evolve(customer, username="locked")


async def test_expiring_between_is_half_open_and_ordered(uow_factory: Factory) -> None:
    """expiring_between(start, end) returns start <= expires_at < end, soonest first."""
    offsets = [timedelta(hours=h) for h in (5, 0, 24, 12, -1, 25)]
    for offset in offsets:
        customer = await _add_customer(uow_factory)
        assert customer.id is not None
        async with uow_factory() as uow:
            await uow.subscriptions.add(
                Subscription(
                    id=None,
                    customer_id=customer.id,
                    plan_code=None,
                    expires_at=T0 + offset,
                    created_at=T0,
                    updated_at=T0,
                )
            )
            await uow.commit()
    async with uow_factory() as uow:
        found = await uow.subscriptions.expiring_between(T0, T0 + timedelta(hours=24))
    assert [s.expires_at - T0 for s in found] == [timedelta(hours=h) for h in (0, 5, 12)]


# -- trials -----------------------------------------------------------------------------


async def test_trial_is_claimed_once_until_reset(uow_factory: Factory) -> None:
    """claim() is True once per customer; reset() gives the trial back."""
    alice = await _add_customer(uow_factory)
    bob = await _add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    async with uow_factory() as uow:
        assert await uow.trials.claim(alice.id, T0) is True
        assert await uow.trials.claim(alice.id, T0) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.trials.claim(alice.id, T0) is False
        assert await uow.trials.claim(bob.id, T0) is True
        await uow.trials.reset(alice.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.trials.claim(alice.id, T0) is True
        assert await uow.trials.claim(bob.id, T0) is False


async def test_uncommitted_trial_claim_is_forgotten(uow_factory: Factory) -> None:
    """A claim in a rolled-back unit of work does not use up the trial."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        assert await uow.trials.claim(customer.id, T0) is True
    async with uow_factory() as uow:
        assert await uow.trials.claim(customer.id, T0) is True


# -- orders -----------------------------------------------------------------------------


async def test_orders_round_trip_every_field(uow_factory: Factory) -> None:
    """Plan and top-up orders come back exactly as stored; unknown ids give None."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    plan_order = Order(
        id=_uid("o"),
        customer_id=customer.id,
        kind=OrderKind.PLAN,
        amount=Money.of("179.10", RUB),
        list_price=Money.of("199.00", RUB),
        plan_code="month",
        days=30,
        promo_code="SPRING10",
        discount_percent=10,
        created_at=T0 + timedelta(microseconds=7),
    )
    topup = _topup_order(customer.id, Money(250, XTR))
    async with uow_factory() as uow:
        await uow.plans.upsert(_plan())
        await uow.orders.add(plan_order)
        await uow.orders.add(topup)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.orders.get(plan_order.id) == plan_order
        assert await uow.orders.get(topup.id) == topup
        assert await uow.orders.get("nope") is None


# -- payments ---------------------------------------------------------------------------


async def test_payment_round_trips_every_field(uow_factory: Factory) -> None:
    """A payment comes back exactly as stored, by id and by (provider, external id)."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    order = _topup_order(customer.id, Money.of("10.50", USD))
    payment = _payment(
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
    first = await _add_payment(uow_factory, external_id="dup-1")
    order = _topup_order(first.customer_id)
    async with uow_factory() as uow:
        await uow.orders.add(order)
        await uow.payments.add(_payment(order, provider="cryptopay", external_id="dup-1"))
        await uow.commit()
    with pytest.raises(ConflictError):
        async with uow_factory() as uow:
            await uow.payments.add(_payment(order, external_id="dup-1"))


async def test_payment_transition_sets_optional_fields(uow_factory: Factory) -> None:
    """transition() moves the status, stamps updated_at and sets the given fields only."""
    payment = await _add_payment(uow_factory)
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
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    cases: list[tuple[Payment, PaymentStatus]] = []
    async with uow_factory() as uow:
        for src in PaymentStatus:
            for dst in PaymentStatus:
                order = _topup_order(customer.id)
                payment = _payment(order, status=src)
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
    payment = await _add_payment(uow_factory)
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
    payment = await _add_payment(uow_factory)
    async with uow_factory() as uow:
        assert await uow.payments.transition(payment.id, PaymentStatus.SUCCEEDED, T0)
    async with uow_factory() as uow:
        assert await uow.payments.get(payment.id) == payment


async def test_add_refund_stays_within_the_amount(uow_factory: Factory) -> None:
    """Refunds add up to at most the amount; the whole amount makes the payment REFUNDED."""
    payment = await _add_payment(uow_factory, status=PaymentStatus.SUCCEEDED)
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
    payment = await _add_payment(uow_factory, status=PaymentStatus.PENDING)
    async with uow_factory() as uow:
        assert await uow.payments.add_refund(payment.id, Money(100, RUB), T0) is None
        assert await uow.payments.get(payment.id) == payment


async def test_open_older_than_lists_old_open_payments_oldest_first(uow_factory: Factory) -> None:
    """open_older_than() returns created or pending payments before the cutoff, oldest
    first, at most *limit*."""
    customer = await _add_customer(uow_factory)
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
            order = _topup_order(customer.id)
            payment = _payment(order, status=status, created_at=T0 + timedelta(minutes=minutes))
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
    alice = await _add_customer(uow_factory)
    bob = await _add_customer(uow_factory)
    assert alice.id is not None
    assert bob.id is not None
    made: list[Payment] = []
    async with uow_factory() as uow:
        for i, owner in enumerate([alice.id, bob.id, alice.id, alice.id]):
            order = _topup_order(owner)
            payment = _payment(order, created_at=T0 + timedelta(minutes=i))
            await uow.orders.add(order)
            await uow.payments.add(payment)
            made.append(payment)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.payments.recent() == made[::-1]
        assert await uow.payments.recent(limit=2) == [made[3], made[2]]
        assert await uow.payments.recent(customer_id=alice.id) == [made[3], made[2], made[0]]
        assert await uow.payments.recent(customer_id=bob.id) == [made[1]]


# -- ledger -----------------------------------------------------------------------------


async def test_ledger_post_round_trips_and_moves_the_balance(uow_factory: Factory) -> None:
    """post() stores the entry with an id and changes the balance of its currency only."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    credit = _entry(
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
    debit = _entry(
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
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        assert await uow.ledger.post(_entry(customer.id, 1_000, "same")) is True
        assert await uow.ledger.post(_entry(customer.id, 1_000, "same")) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.post(_entry(customer.id, 5_000, "same")) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.ledger.balance(customer.id, RUB) == Money(1_000, RUB)
        assert len(await uow.ledger.entries(customer.id)) == 1


async def test_insufficient_funds_changes_nothing(uow_factory: Factory) -> None:
    """A debit beyond the balance raises InsufficientFundsError and, after the rollback,
    nothing has changed."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    await _credit(uow_factory, customer.id, 10_000)
    customer_id = customer.id

    async def overdraw() -> None:
        async with uow_factory() as uow:
            await uow.ledger.post(_entry(customer_id, -10_001, "too-much"))
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
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    await _credit(uow_factory, customer.id, 3_000)
    async with uow_factory() as uow:
        assert await uow.ledger.post(_entry(customer.id, -3_000)) is True
        await uow.commit()
    with pytest.raises(InsufficientFundsError):
        async with uow_factory() as uow:
            await uow.ledger.post(_entry(customer.id, -1))
    async with uow_factory() as uow:
        assert await uow.ledger.balance(customer.id, RUB) == Money.zero(RUB)


async def test_no_mismatches_after_many_posts(uow_factory: Factory) -> None:
    """After many credits and debits over customers and currencies, balances equal sums."""
    customers = [await _add_customer(uow_factory) for _ in range(3)]
    expected: dict[int, int] = {}
    for round_ in range(10):
        async with uow_factory() as uow:
            for c in customers:
                assert c.id is not None
                await uow.ledger.post(_entry(c.id, 1_000 + round_))
                await uow.ledger.post(_entry(c.id, -(300 + round_)))
                await uow.ledger.post(
                    LedgerEntry(
                        customer_id=c.id,
                        amount=Money(7, XTR),
                        kind=EntryKind.TOPUP,
                        idempotency_key=_uid("xtr"),
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


# -- holds ------------------------------------------------------------------------------


async def test_hold_round_trips_and_settles_once(uow_factory: Factory) -> None:
    """A held hold settles once (captured or released); later settles return None."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    order = _topup_order(customer.id)
    one = Hold(
        id=_uid("h"),
        customer_id=customer.id,
        amount=Money(9_900, RUB),
        order_id=order.id,
        created_at=T0,
    )
    two = attrs.evolve(one, id=_uid("h"), amount=Money(100, XTR))
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


# -- promos -----------------------------------------------------------------------------


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
    alice = await _add_customer(uow_factory)
    bob = await _add_customer(uow_factory)
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
    customer = await _add_customer(uow_factory)
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
    customer = await _add_customer(uow_factory)
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


# -- referrals --------------------------------------------------------------------------


async def test_referrals_one_referrer_per_referee(uow_factory: Factory) -> None:
    """A referee gets one referrer; referrer_of and referees_of read the links."""
    ids = [(await _add_customer(uow_factory)).id for _ in range(4)]
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
    ids = [(await _add_customer(uow_factory)).id for _ in range(3)]
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


# -- audit ------------------------------------------------------------------------------


async def test_audit_recent_newest_first_with_subject_filter(uow_factory: Factory) -> None:
    """Audit entries round-trip with ids; recent() is newest first and filters by subject."""
    entries = [
        AuditEntry(
            actor=Actor.admin(1),
            action="ban",
            subject="customer:1",
            at=T0,
            details={"reason": "spam", "days": 3, "flags": ["a", "b"]},
        ),
        AuditEntry(
            actor=Actor.system("renew"),
            action="renew",
            subject="customer:2",
            at=T0 + timedelta(seconds=1),
        ),
        AuditEntry(
            actor=Actor.provider("yookassa"),
            action="refund",
            subject="customer:1",
            at=T0 + timedelta(seconds=2),
            details={"amount": "100.00", "ok": True},
        ),
    ]
    async with uow_factory() as uow:
        for entry in entries:
            await uow.audit.add(entry)
        await uow.commit()
    async with uow_factory() as uow:
        recent = await uow.audit.recent()
        mine = await uow.audit.recent(subject="customer:1")
        one = await uow.audit.recent(limit=1)
    assert [attrs.evolve(e, id=None) for e in recent] == entries[::-1]
    assert all(isinstance(e.id, int) for e in recent)
    assert len({e.id for e in recent}) == 3
    assert [e.action for e in mine] == ["refund", "ban"]
    assert one == recent[:1]


# -- outbox -----------------------------------------------------------------------------


async def test_outbox_add_dedupes_and_round_trips(uow_factory: Factory) -> None:
    """add() is True once per dedupe key; the job comes back with an id and its payload."""
    job = _job("notify:1", payload={"chat_id": 7, "text": "paid", "nested": {"n": [1, 2]}})
    async with uow_factory() as uow:
        assert await uow.outbox.add(job) is True
        assert await uow.outbox.add(_job("notify:1", payload={"other": 1})) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.outbox.add(job) is False
        assert await uow.outbox.pending_count() == 1
        [claimed] = await uow.outbox.claim(T0, T0 + timedelta(seconds=30))
        assert claimed.id is not None
        assert await uow.outbox.get(claimed.id) == claimed
        assert await uow.outbox.get(claimed.id + 1000) is None
    assert attrs.evolve(claimed, id=None, locked_until=None, attempts=0) == job


async def test_outbox_claim_takes_due_jobs_in_order_with_a_lease(uow_factory: Factory) -> None:
    """claim() leases due pending jobs, earliest first, up to *limit*, of the given kinds,
    and counts an attempt."""
    jobs = [
        _job("a", due_at=T0 - timedelta(seconds=5)),
        _job("b", due_at=T0 - timedelta(seconds=10), kind=JobKind.APPLY_SUBSCRIPTION),
        _job("c", due_at=T0),
        _job("future", due_at=T0 + timedelta(seconds=1)),
    ]
    async with uow_factory() as uow:
        for job in jobs:
            await uow.outbox.add(job)
        await uow.commit()
    lease = T0 + timedelta(seconds=60)
    async with uow_factory() as uow:
        only_notify = await uow.outbox.claim(T0, lease, limit=1, kinds=[JobKind.NOTIFY_CUSTOMER])
        rest = await uow.outbox.claim(T0, lease)
        await uow.commit()
    assert [j.dedupe_key for j in only_notify] == ["a"]
    assert [j.dedupe_key for j in rest] == ["b", "c"]
    for job in only_notify + rest:
        assert job.locked_until == lease
        assert job.attempts == 1
        assert job.status is JobStatus.PENDING
    async with uow_factory() as uow:
        # The leased jobs stay leased; the job that has become due is handed out.
        later = await uow.outbox.claim(T0 + timedelta(seconds=30), lease)
        assert [j.dedupe_key for j in later] == ["future"]
        assert await uow.outbox.pending_count() == 4


async def test_outbox_lease_expiry_hands_a_job_out_again(uow_factory: Factory) -> None:
    """A leased job is not handed out again until its lease has passed."""
    async with uow_factory() as uow:
        await uow.outbox.add(_job("lease"))
        await uow.commit()
    lease = T0 + timedelta(seconds=30)
    async with uow_factory() as uow:
        [first] = await uow.outbox.claim(T0, lease)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.outbox.claim(T0 + timedelta(seconds=29), lease) == []
        [again] = await uow.outbox.claim(lease, lease + timedelta(seconds=30))
        await uow.commit()
    assert again.id == first.id
    assert again.attempts == 2
    assert again.locked_until == lease + timedelta(seconds=30)


async def test_outbox_retry_park_complete(uow_factory: Factory) -> None:
    """retry() reschedules with the error, park() and complete() take a job out of the
    queue; pending_count() and parked() follow."""
    async with uow_factory() as uow:
        for key in ("retry", "park", "done", "park2"):
            await uow.outbox.add(_job(key))
        await uow.commit()
    async with uow_factory() as uow:
        claimed = {j.dedupe_key: j for j in await uow.outbox.claim(T0, T0 + timedelta(minutes=1))}
        assert set(claimed) == {"retry", "park", "done", "park2"}
        ids = {k: j.id for k, j in claimed.items() if j.id is not None}
        assert len(ids) == 4
        later = T0 + timedelta(minutes=5)
        await uow.outbox.retry(ids["retry"], later, "panel down")
        await uow.outbox.park(ids["park"], "bad payload")
        await uow.outbox.complete(ids["done"])
        await uow.outbox.park(ids["park2"], "gone")
        await uow.commit()
    async with uow_factory() as uow:
        retried = await uow.outbox.get(ids["retry"])
        assert retried is not None
        assert retried.status is JobStatus.PENDING
        assert retried.due_at == later
        assert retried.last_error == "panel down"
        assert retried.attempts == 1
        done = await uow.outbox.get(ids["done"])
        assert done is not None
        assert done.status is JobStatus.DONE
        assert await uow.outbox.pending_count() == 1
        parked = await uow.outbox.parked()
        assert [(j.dedupe_key, j.status, j.last_error) for j in parked] == [
            ("park2", JobStatus.PARKED, "gone"),
            ("park", JobStatus.PARKED, "bad payload"),
        ]
        assert await uow.outbox.parked(limit=1) == parked[:1]
        # Nothing is due before *later*; then only the retried job comes back.
        assert await uow.outbox.claim(later - timedelta(seconds=1), later + timedelta(1)) == []
        [again] = await uow.outbox.claim(later, later + timedelta(minutes=1))
        assert again.dedupe_key == "retry"
        assert again.attempts == 2


async def test_outbox_uncommitted_claim_is_rolled_back(uow_factory: Factory) -> None:
    """A claim in a unit of work that is not committed leaves the job free."""
    async with uow_factory() as uow:
        await uow.outbox.add(_job("free"))
        await uow.commit()
    async with uow_factory() as uow:
        assert len(await uow.outbox.claim(T0, T0 + timedelta(minutes=1))) == 1
    async with uow_factory() as uow:
        [job] = await uow.outbox.claim(T0, T0 + timedelta(minutes=1))
    assert job.attempts == 1


# -- concurrency ------------------------------------------------------------------------


async def test_concurrent_finalisation_succeeds_once(uow_factory: Factory) -> None:
    """Of 50 concurrent transitions of one payment to SUCCEEDED exactly one wins."""
    payment = await _add_payment(uow_factory, status=PaymentStatus.PENDING)

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


async def test_concurrent_debits_never_overdraw(uow_factory: Factory) -> None:
    """50 concurrent debits worth more than the balance: the balance stays at or above zero,
    each accepted debit has its entry, and balances match the ledger."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    customer_id = customer.id
    await _credit(uow_factory, customer_id, 1_000)

    async def debit(i: int) -> bool:
        try:
            async with uow_factory() as uow:
                await uow.ledger.post(_entry(customer_id, -30, f"debit:{i}"))
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


async def test_concurrent_trial_claims_grant_one(uow_factory: Factory) -> None:
    """Of 20 concurrent trial claims by one customer exactly one is granted."""
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    customer_id = customer.id

    async def claim() -> bool:
        async with uow_factory() as uow:
            ok = await uow.trials.claim(customer_id, T0)
            await uow.commit()
            return ok

    results = await asyncio.gather(*(claim() for _ in range(20)))
    assert results.count(True) == 1


async def test_concurrent_outbox_claims_never_share_a_job(uow_factory: Factory) -> None:
    """10 concurrent claimers of 30 due jobs together get each job exactly once."""
    async with uow_factory() as uow:
        for i in range(30):
            await uow.outbox.add(_job(f"job:{i}"))
        await uow.commit()

    async def claim() -> list[int]:
        async with uow_factory() as uow:
            jobs = await uow.outbox.claim(T0, T0 + timedelta(minutes=1), limit=5)
            await uow.commit()
            return [j.id for j in jobs if j.id is not None]

    batches = await asyncio.gather(*(claim() for _ in range(10)))
    handed_out = [job_id for batch in batches for job_id in batch]
    assert len(handed_out) == len(set(handed_out))
    assert len(handed_out) == 30


# -- panel users (the cached view of each subscription's panel user) ----------------------


async def _add_linked_subscription(uow_factory: Callable[[], Any], key: str, username: str) -> int:
    customer = await _add_customer(uow_factory)
    assert customer.id is not None
    async with uow_factory() as uow:
        sub = await uow.subscriptions.add(Subscription.new(customer.id, T0).extended(30, T0))
        assert sub.id is not None
        await uow.subscriptions.set_panel_link(
            sub.id, panel_key=key, panel_username=username, subscription_url=None
        )
        await uow.commit()
    return sub.id


async def test_panel_user_view_round_trips_and_upsert_replaces(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """upsert() stores every field of the view, a second upsert replaces it, get() reads it."""
    sub_id = await _add_linked_subscription(uow_factory, "41", "vs_41")
    view = PanelUserView(
        subscription_id=sub_id,
        panel_key="41",
        status=PanelStatus.ACTIVE,
        updated_at=T0,
        used_traffic_bytes=5 * GIB,
        lifetime_used_traffic_bytes=7 * GIB,
        traffic_limit_bytes=100 * GIB,
        online_at=T0 - timedelta(minutes=3),
        first_connected_at=T0 - timedelta(days=2),
        devices=2,
        last_event="user.first_connected",
    )
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) is None
        await uow.panel_users.upsert(view)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) == view
    newer = attrs.evolve(
        view,
        status=PanelStatus.LIMITED,
        used_traffic_bytes=100 * GIB,
        online_at=None,
        devices=0,
        last_event="user.limited",
        updated_at=T0 + timedelta(hours=1),
    )
    async with uow_factory() as uow:
        await uow.panel_users.upsert(newer)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) == newer


async def test_panel_user_upsert_without_commit_is_rolled_back(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """A view written in a unit of work that does not commit is not kept."""
    sub_id = await _add_linked_subscription(uow_factory, "42", "vs_42")
    async with uow_factory() as uow:
        await uow.panel_users.upsert(PanelUserView(sub_id, "42", PanelStatus.ACTIVE, updated_at=T0))
    async with uow_factory() as uow:
        assert await uow.panel_users.get(sub_id) is None


async def test_find_subscription_by_panel_key_then_username(
    uow_factory: Callable[[], UnitOfWork],
) -> None:
    """find_subscription() prefers the stored panel key, falls back to the stored username,
    and answers None for a panel user no subscription projects."""
    first = await _add_linked_subscription(uow_factory, "501", "vs_a")
    second = await _add_linked_subscription(uow_factory, "502", "vs_b")
    async with uow_factory() as uow:
        assert await uow.panel_users.find_subscription("501", "vs_b") == first
        assert await uow.panel_users.find_subscription("9999", "vs_b") == second
        assert await uow.panel_users.find_subscription("9999", "someone_else") is None
