"""The one-statement confirmation on PostgreSQL does exactly what the reference does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SqlFactory, make_database_url
from tests.integration.shop import START, make_shop
from vpnshop.adapters.storage.engine import create_engine
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.settlement import Confirmation
from vpnshop.services.settlement import effects_for, settle_stepwise

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlFactory]:
    """A fresh PostgreSQL database with the store's fast path, as bootstrap wires it."""
    engine = create_engine(make_database_url(request, "postgres", tmp_path), pool_size=20)
    factory = SqlFactory(engine)
    try:
        yield factory
    finally:
        assert factory.settler is not None
        await factory.settler.aclose()
        await engine.dispose()


async def _state(
    shop: Any, customer_id: int, referrer_id: int, payment_id: str, external_id: str
) -> dict:
    """What a confirmation changed, with the ids that must differ taken out."""
    async with shop.uow() as uow:
        payment = await uow.payments.get(payment_id)
        subs = await uow.subscriptions.for_customer(customer_id)
        entries = await uow.ledger.entries(customer_id) + await uow.ledger.entries(referrer_id)
        balances = (
            await uow.ledger.balance(customer_id, RUB),
            await uow.ledger.balance(referrer_id, RUB),
        )
        jobs = await uow.outbox.claim(START + timedelta(days=1), START, 100)
        audit = await uow.audit.recent(5, subject=f"payment:{payment_id}")
    assert payment is not None
    return {
        "payment": (payment.status, payment.external_id == external_id, payment.saved_method_id),
        "subs": [
            (
                s.plan_code,
                s.expires_at,
                s.traffic_limit_bytes,
                s.device_limit,
                s.squads,
                s.is_trial,
                s.enabled,
            )
            for s in subs
        ],
        "ledger": sorted(
            (e.kind, e.amount.minor, str(e.actor), e.idempotency_key.replace(payment_id, "P"))
            for e in entries
        ),
        "balances": balances,
        "jobs": sorted(
            (
                j.kind,
                j.dedupe_key.replace(payment_id, "P").split(":")[0],
                tuple(sorted(k for k in j.payload)),
            )
            for j in jobs
            if payment_id in j.dedupe_key
        ),
        "audit": [
            (a.action, str(a.actor), {**a.details, "external_id": "X"})
            for a in audit
            if a.action == "payment.succeeded"
        ],
    }


@pytest.mark.parametrize("purchase", ["topup", "month", "month-again"])
async def test_one_statement_equals_the_reference(pg_factory: Any, purchase: str) -> None:
    """For top-ups and plan purchases (new and extended subscriptions), with a referrer
    rewarded, the fast statement and settle_stepwise leave the same rows behind."""
    policy = ReferralPolicy(percent=10)
    shop = await make_shop(pg_factory, policy)
    results = []
    for n, fast in enumerate((True, False)):
        referrer = await shop.customer(7000 + n)
        buyer = await shop.customer(7100 + n, referrer_telegram_id=7000 + n)
        if purchase == "month-again":
            await shop.extend(buyer, 5, actor=Actor.admin(1), reason="gift")
        link = (
            await shop.checkout(buyer, "fake", topup=Money(50000, RUB))
            if purchase == "topup"
            else await shop.checkout(buyer, "fake", plan_code="month")
        )
        event = shop.gateway.event(payment_ref=link.payment_id)
        now = shop.clock.now()
        if fast:
            done = await pg_factory.settler.confirm(
                Confirmation(
                    provider="fake",
                    amount=link.order.amount,
                    payment_id=link.payment_id,
                    external_id=event.external_id,
                    saved_method_id="pm-1",
                    actor=Actor.provider("fake"),
                    referral_reward_percent=policy.percent,
                ),
                now,
            )
            assert done is not None and done.status is PaymentStatus.SUCCEEDED
        else:
            async with shop.uow() as uow:
                ctx = await uow.payments.context(link.payment_id, "fake", None)
                assert ctx is not None
                effects = effects_for(
                    ctx,
                    now=now,
                    actor=Actor.provider("fake"),
                    policy=policy,
                    audit_details={"external_id": event.external_id},
                )
                done = await settle_stepwise(
                    uow,
                    link.payment_id,
                    PaymentStatus.SUCCEEDED,
                    now,
                    effects=effects,
                    external_id=event.external_id,
                    saved_method_id="pm-1",
                )
                assert done is not None
                await uow.commit()
        assert event.external_id is not None
        results.append(await _state(shop, buyer, referrer, link.payment_id, event.external_id))
    assert results[0] == results[1]


async def test_one_statement_refuses_what_it_does_not_cover(pg_factory: Any) -> None:
    """Wrong amount, wrong provider, a settled payment or a promo order match nothing."""
    shop = await make_shop(pg_factory)
    buyer = await shop.customer(7200)
    link = await shop.checkout(buyer, "fake", topup=Money(50000, RUB))

    def confirmation(**changes: Any) -> Confirmation:
        base = dict(
            provider="fake",
            amount=Money(50000, RUB),
            payment_id=link.payment_id,
            external_id=None,
            saved_method_id=None,
            actor=Actor.provider("fake"),
            referral_reward_percent=0,
        )
        return Confirmation(**{**base, **changes})

    settler = pg_factory.settler
    now = shop.clock.now()
    assert await settler.confirm(confirmation(amount=Money(49999, RUB)), now) is None
    assert await settler.confirm(confirmation(provider="other"), now) is None
    assert await settler.confirm(confirmation(external_id="not-ours"), now) is None
    assert await settler.confirm(confirmation(), now) is not None
    assert await settler.confirm(confirmation(), now) is None  # already settled
    async with shop.uow() as uow:
        assert await uow.ledger.balance(buyer, RUB) == Money(50000, RUB)
