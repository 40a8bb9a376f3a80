"""Every store renders the one settlement description the same: for every kind of
payment, the in-memory store, SQLite (stepwise and its settler) and PostgreSQL (stepwise,
the unit of work's one statement and the batch settler) leave the same rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.conftest import make_database_url, sql_storage
from tests.integration.shop import ADMIN, START, Shop, make_shop
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.bootstrap import Storage
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import Payment
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.domain.settlement import Effects
from vpnshop.ports.settlement import Confirmation, PaymentSettler
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.outcome import Outcome
from vpnshop.testing.memory import MemoryStore, memory_uow_factory

VARIANTS = [
    "memory",
    "sqlite-stepwise",
    "sqlite-settler",
    "postgres-stepwise",
    "postgres-atomic",
    "postgres-settler",
]


class _Stepwise(SqlAlchemyUnitOfWork):
    """The unit of work with its one-statement settle switched off."""

    def can_settle(self, effects: Effects) -> bool:
        return False


@attrs.define
class _Counted:
    """A unit-of-work factory that counts the one-statement settles its units run."""

    make: Callable[[], UnitOfWork]
    atomic: int = 0

    def __call__(self) -> UnitOfWork:
        uow = self.make()
        if isinstance(uow, SqlAlchemyUnitOfWork):
            settle = uow.settle

            async def counted(*args: Any, **kw: Any) -> Any:
                self.atomic += 1
                return await settle(*args, **kw)

            uow.settle = counted  # type: ignore[method-assign]
        return uow


@attrs.define
class _CountedSettler:
    """The store's settler, counting the payments it settled itself."""

    inner: PaymentSettler
    settled: int = 0

    async def confirm(self, confirmation: Confirmation, now: datetime) -> Payment | None:
        done = await self.inner.confirm(confirmation, now)
        self.settled += done is not None
        return done


@asynccontextmanager
async def _storage(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Storage, _Counted, _CountedSettler | None]]:
    if variant == "memory":
        counted = _Counted(memory_uow_factory(MemoryStore()))
        yield Storage(counted), counted, None
        return
    backend, path = variant.split("-")
    (tmp_path / variant).mkdir()
    async with sql_storage(make_database_url(request, backend, tmp_path / variant)) as opened:
        engine = opened.engine
        assert engine is not None
        counted = _Counted((lambda: _Stepwise(engine)) if path == "stepwise" else opened.uow)
        settler = (
            _CountedSettler(opened.settler)
            if path == "settler" and opened.settler is not None
            else None
        )
        yield attrs.evolve(opened, uow=counted, settler=settler), counted, settler


async def _add_promo(shop: Shop) -> None:
    async with shop.uow() as uow:
        await uow.promos.add(
            PromoCode(code="SALE20", kind=PromoKind.DISCOUNT, value=20, created_at=START)
        )
        await uow.commit()


# Each case: the referral policy, and what the buyer does; it returns the payment id.
Case = Callable[[Shop, int], Awaitable[str]]


async def _confirm(shop: Shop, payment_id: str, *, by_external_id: bool = False) -> None:
    event = shop.gateway.event(payment_ref=payment_id)
    if by_external_id:
        event = attrs.evolve(event, payment_ref=None)
    assert await shop.confirm(event) is Outcome.CONFIRMED


async def topup(shop: Shop, buyer: int) -> str:
    link = await shop.checkout(buyer, "fake", topup=Money(50000, RUB))
    await _confirm(shop, link.payment_id)
    return link.payment_id


async def topup_by_external_id(shop: Shop, buyer: int) -> str:
    link = await shop.checkout(buyer, "fake", topup=Money(30000, RUB))
    await _confirm(shop, link.payment_id, by_external_id=True)
    return link.payment_id


async def plan_new(shop: Shop, buyer: int) -> str:
    link = await shop.checkout(buyer, "fake", plan_code="month")
    await _confirm(shop, link.payment_id)
    return link.payment_id


async def plan_extend(shop: Shop, buyer: int) -> str:
    await shop.extend(buyer, 5, actor=ADMIN, reason="gift")
    shop.clock.advance(timedelta(days=1))
    link = await shop.checkout(buyer, "fake", plan_code="month")
    await _confirm(shop, link.payment_id)
    return link.payment_id


async def plan_with_promo(shop: Shop, buyer: int) -> str:
    await _add_promo(shop)
    link = await shop.checkout(buyer, "fake", plan_code="month", promo_code="SALE20")
    await _confirm(shop, link.payment_id)
    return link.payment_id


async def plan_from_balance(shop: Shop, buyer: int) -> str:
    await shop.credit(
        buyer, Money(100000, RUB), kind=EntryKind.ADMIN_ADJUSTMENT, key="gift", actor=ADMIN
    )
    payment = await shop.pay_from_balance(buyer, "month", RUB, actor=ADMIN)
    return payment.id


PERCENT = ReferralPolicy(percent=10)
BONUS_DAYS = ReferralPolicy(percent=10, referrer_bonus_days=7, referee_bonus_days=3)
CASES: dict[str, tuple[ReferralPolicy, Case, bool]] = {
    # name: (policy, case, whether the settler takes it)
    "topup": (ReferralPolicy(), topup, True),
    "topup-referral-percent": (PERCENT, topup, True),
    "topup-by-external-id": (PERCENT, topup_by_external_id, True),
    "plan-new-referral-percent": (PERCENT, plan_new, True),
    "plan-extend": (ReferralPolicy(), plan_extend, True),
    "plan-promo": (PERCENT, plan_with_promo, False),
    "plan-referral-bonus-days": (BONUS_DAYS, plan_new, False),
    "topup-referral-bonus-days": (BONUS_DAYS, topup, False),
    "plan-from-balance": (PERCENT, plan_from_balance, False),
}


async def _rows(shop: Shop, customers: dict[int, str], payment_id: str) -> dict[str, Any]:
    """Every row the settlement could have written, through the storage port (so the
    in-memory store is read the same way), with store-made ids named by role."""

    def named(value: Any) -> Any:
        text = str(value).replace(payment_id, "P")
        for cid, role in customers.items():
            if value == cid:
                return role
        return text if isinstance(value, str) else value

    async with shop.uow() as uow:
        payment = await uow.payments.get(payment_id)
        assert payment is not None
        ledger, balances, subscriptions = [], [], []
        for cid, role in customers.items():
            for e in await uow.ledger.entries(cid):
                ledger.append(
                    (
                        role,
                        e.kind,
                        e.amount,
                        str(e.actor),
                        named(e.idempotency_key),
                        named(e.reference),
                        e.memo,
                        e.created_at,
                    )
                )
            balances.append((role, await uow.ledger.balance(cid, RUB)))
            for s in await uow.subscriptions.for_customer(cid):
                subscriptions.append(
                    (
                        role,
                        s.plan_code,
                        s.expires_at,
                        s.traffic_limit_bytes,
                        s.traffic_reset,
                        s.device_limit,
                        s.squads,
                        s.is_trial,
                        s.enabled,
                    )
                )
        jobs = await uow.outbox.claim(START + timedelta(days=400), START, 1000)
        audit = await uow.audit.recent(50, subject=f"payment:{payment_id}")
        promo = await uow.promos.get("SALE20")
    return {
        "payment": (payment.status, payment.amount, payment.saved_method_id),
        "ledger": sorted(ledger, key=str),
        "balances": balances,
        "subscriptions": sorted(subscriptions, key=str),
        "jobs": sorted(
            (
                j.kind,
                _subscription_blind(named(j.dedupe_key)),
                _named_all(named, j.payload, skip="subscription_id"),
                j.due_at,
                j.attempts,
            )
            for j in jobs
        ),
        "audit": sorted(
            (a.action, str(a.actor), named(a.subject), _named_all(named, a.details), a.at)
            for a in audit
        ),
        "promo": None if promo is None else (promo.uses,),
    }


def _named_all(
    named: Callable[[Any], Any], values: Mapping[str, Any], skip: str = ""
) -> dict[str, Any]:
    return {k: named(v) for k, v in values.items() if k != skip}


def _subscription_blind(key: str) -> str:
    """``apply:17:payment:P`` -> ``apply:S:payment:P``: subscription ids are the store's."""
    head, _, rest = key.partition(":")
    if head != "apply":
        return key
    return "apply:S:" + rest.partition(":")[2]


@pytest.mark.postgres
@pytest.mark.parametrize("case", list(CASES))
async def test_every_store_leaves_the_same_rows(
    case: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """For this kind of payment, every store and path (memory; SQLite stepwise and
    settler; PostgreSQL stepwise, one statement and batch settler) writes the same
    ledger, balances, subscriptions, jobs, audit and promo rows, under the same keys."""
    policy, act, fast = CASES[case]
    atomic = case not in ("plan-promo", "plan-referral-bonus-days", "topup-referral-bonus-days")
    results: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        async with _storage(variant, request, tmp_path) as (storage, counted, settler):
            shop = await make_shop(storage, policy)
            referrer = await shop.customer(9001)
            buyer = await shop.customer(9002, referrer_telegram_id=9001)
            payment_id = await act(shop, buyer)
            if settler is not None:  # the settler took exactly what it covers
                assert settler.settled == (1 if fast else 0), variant
            if variant == "postgres-atomic":  # and the one statement the rest it covers
                assert (counted.atomic > 0) is atomic, variant
            results[variant] = await _rows(shop, {buyer: "buyer", referrer: "referrer"}, payment_id)
    reference = results["memory"]
    for variant, rows in results.items():
        assert rows == reference, variant
