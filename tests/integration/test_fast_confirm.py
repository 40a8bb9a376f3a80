"""The stores' fast confirmation (one statement on PostgreSQL, one trip to a thread on
SQLite) does exactly what the reference does, alone and in a batch of concurrent
confirmations (the group commit)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SQL_BACKENDS, make_database_url, sql_storage
from tests.integration.shop import START, make_shop
from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.settle_pg_batch import CONFIRM_BATCH_SQL, PgPaymentSettler
from vpnshop.bootstrap import Storage
from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.settlement import Confirmation
from vpnshop.services.settlement import effects_for, settle_stepwise


@pytest.fixture(params=SQL_BACKENDS)
async def sql_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A fresh database of each SQL backend with the store's fast path, as bootstrap
    opens it."""
    async with sql_storage(make_database_url(request, request.param, tmp_path)) as storage:
        assert storage.settler is not None
        yield storage


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


async def _stored(factory: Storage, customer_id: int, payment_id: str) -> list[Any]:
    """The stored form of the times and JSON the confirmation wrote, as the database
    holds them (on SQLite: text, which must be what SQLAlchemy's types write, or
    comparisons and reads elsewhere break). Ids are blanked; the clock is the same."""
    queries = [
        ("SELECT updated_at FROM payments WHERE id = ?", payment_id),
        (
            "SELECT expires_at, updated_at, squads FROM subscriptions WHERE customer_id = ?",
            customer_id,
        ),
        ("SELECT created_at FROM ledger WHERE reference = ? ORDER BY id", payment_id),
        (
            "SELECT payload, due_at, created_at FROM outbox WHERE dedupe_key LIKE ? ORDER BY id",
            f"%{payment_id}",
        ),
        (
            "SELECT details, at FROM audit_log WHERE subject = ? AND action = 'payment.succeeded'",
            f"payment:{payment_id}",
        ),
    ]
    stored: list[Any] = []
    assert factory.engine is not None
    async with factory.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        for sql, arg in queries:
            rows = await conn.exec_driver_sql(sql if sqlite else sql.replace("?", "$1"), (arg,))
            for row in rows.all():
                json_text = [v for v in row if isinstance(v, str) and v[:1] in "[{"]
                if sqlite:  # JSON text exactly as SQLAlchemy's JSON type writes it
                    assert all(json.dumps(json.loads(v)) == v for v in json_text), row
                stored.append(
                    tuple(
                        "<json>" if v in json_text or isinstance(v, dict | list) else v for v in row
                    )
                )
    return stored


@pytest.mark.parametrize("purchase", ["topup", "month", "month-again"])
async def test_one_statement_equals_the_reference(sql_factory: Any, purchase: str) -> None:
    """For top-ups and plan purchases (new and extended subscriptions), with a referrer
    rewarded, the fast statement and settle_stepwise leave the same rows behind."""
    policy = ReferralPolicy(percent=10)
    shop = await make_shop(sql_factory, policy)
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
            done = await sql_factory.settler.confirm(
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
        state = await _state(shop, buyer, referrer, link.payment_id, event.external_id)
        state["stored"] = await _stored(sql_factory, buyer, link.payment_id)
        results.append(state)
    assert results[0] == results[1]


async def test_one_statement_refuses_what_it_does_not_cover(sql_factory: Any) -> None:
    """Wrong amount, wrong provider, a settled payment or a promo order match nothing."""
    shop = await make_shop(sql_factory)
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

    settler = sql_factory.settler
    now = shop.clock.now()
    assert await settler.confirm(confirmation(amount=Money(49999, RUB)), now) is None
    assert await settler.confirm(confirmation(provider="other"), now) is None
    assert await settler.confirm(confirmation(external_id="not-ours"), now) is None
    assert await settler.confirm(confirmation(), now) is not None
    assert await settler.confirm(confirmation(), now) is None  # already settled
    async with shop.uow() as uow:
        assert await uow.ledger.balance(buyer, RUB) == Money(50000, RUB)


def _confirmation(link: Any, *, percent: int = 0, external_id: str | None = None) -> Confirmation:
    return Confirmation(
        provider="fake",
        amount=link.order.amount,
        payment_id=link.payment_id,
        external_id=external_id,
        saved_method_id=None,
        actor=Actor.provider("fake"),
        referral_reward_percent=percent,
    )


async def test_concurrent_confirmations_are_settled_together_each_once(sql_factory: Any) -> None:
    """Thirty confirmations at once, ten of them repeats: every payment is settled once,
    each customer credited once, and they went to the database in fewer statements
    than confirmations (the group commit happened)."""
    shop = await make_shop(sql_factory)
    links = []
    for i in range(20):
        buyer = await shop.customer(7300 + i)
        links.append((buyer, await shop.checkout(buyer, "fake", topup=Money(10000 + i, RUB))))
    settler = sql_factory.settler
    now = shop.clock.now()
    calls = [_confirmation(link) for _, link in links] + [
        _confirmation(link) for _, link in links[:10]
    ]
    results = await asyncio.gather(*(settler.confirm(c, now) for c in calls))
    settled = [r.id for r in results if r is not None]
    assert sorted(settled) == sorted(link.payment_id for _, link in links)
    assert settler.group.items == len(calls)
    assert settler.group.batches < len(calls)
    async with shop.uow() as uow:
        for i, (buyer, link) in enumerate(links):
            assert await uow.ledger.balance(buyer, RUB) == Money(10000 + i, RUB)
            payment = await uow.payments.get(link.payment_id)
            assert payment is not None and payment.status is PaymentStatus.SUCCEEDED
    assert len(await shop.jobs("notify_customer")) == 20


async def test_two_purchases_of_one_customer_in_a_batch_both_extend(
    sql_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Two plan purchases of one customer in one batch cannot share one upsert; the batch
    falls back to one statement each, and both months are granted."""
    caplog.set_level(logging.INFO, logger="vpnshop.adapters.storage.group_commit")
    shop = await make_shop(sql_factory)
    buyer = await shop.customer(7400)
    first = await shop.checkout(buyer, "fake", plan_code="month")
    second = await shop.checkout(buyer, "fake", plan_code="month")
    settler = sql_factory.settler
    now = shop.clock.now()
    # Several other payments first, so that both land in the same (second) batch.
    others = []
    for i in range(3):
        other = await shop.customer(7410 + i)
        others.append(await shop.checkout(other, "fake", topup=Money(500, RUB)))
    results = await asyncio.gather(
        *(settler.confirm(_confirmation(link), now) for link in [*others, first, second])
    )
    assert all(r is not None for r in results)
    if sql_factory.engine.dialect.name == "postgresql":  # SQLite uses savepoints instead
        assert "running each alone" in caplog.text  # they did meet in one batch
    async with shop.uow() as uow:
        subs = await uow.subscriptions.for_customer(buyer)
    assert [s.expires_at for s in subs] == [now + timedelta(days=60)]
    assert len(await shop.jobs("apply_subscription")) == 2


async def test_one_failing_confirmation_fails_alone(
    sql_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A confirmation whose statement breaks a constraint gets ConflictError; the others
    in its batch are settled, and the failing payment is left open."""
    caplog.set_level(logging.INFO, logger="vpnshop.adapters.storage.group_commit")
    shop = await make_shop(sql_factory)
    links = []
    for i in range(6):
        buyer = await shop.customer(7500 + i)
        links.append(await shop.checkout(buyer, "fake", topup=Money(1000, RUB)))
    doomed = links[3]
    # A rule the test adds: this one payment's notification job is refused.
    key = f"notify:paid:{doomed.payment_id}"
    async with sql_factory.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(
                f"ALTER TABLE outbox ADD CONSTRAINT test_refuse CHECK (dedupe_key <> '{key}')"
            )
        else:
            await conn.exec_driver_sql(
                f"CREATE TRIGGER test_refuse BEFORE INSERT ON outbox "
                f"WHEN NEW.dedupe_key = '{key}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    settler = sql_factory.settler
    now = shop.clock.now()
    results = await asyncio.gather(
        *(settler.confirm(_confirmation(link), now) for link in links), return_exceptions=True
    )
    assert isinstance(results[3], ConflictError)
    if sql_factory.engine.dialect.name == "postgresql":  # SQLite uses savepoints instead
        assert "running each alone" in caplog.text  # it was in a batch with the others
    assert all(
        r is not None and not isinstance(r, Exception) for i, r in enumerate(results) if i != 3
    )
    async with shop.uow() as uow:
        payment = await uow.payments.get(doomed.payment_id)
        assert payment is not None and payment.status is PaymentStatus.PENDING
        assert await uow.ledger.balance(payment.customer_id, RUB) == Money(0, RUB)


async def test_an_abandoned_confirmation_still_completes(sql_factory: Any) -> None:
    """A caller cancelled while its batch runs does not undo or split the batch: the
    payment is settled, and closing the settler waits for statements under way."""
    shop = await make_shop(sql_factory)
    buyer = await shop.customer(7600)
    link = await shop.checkout(buyer, "fake", topup=Money(700, RUB))
    settler = sql_factory.settler
    task = asyncio.create_task(settler.confirm(_confirmation(link), shop.clock.now()))
    await asyncio.sleep(0)  # the batch has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settler.aclose()
    async with shop.uow() as uow:
        assert await uow.ledger.balance(buyer, RUB) == Money(700, RUB)


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


@pytest.mark.postgres
async def test_the_batch_statement_finds_every_row_by_a_key(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The plan the settler's connections keep for the batch statement (generic, made
    once, possibly while the tables are empty) reads no table whole: each row it touches
    is found through an index, so a batch costs the same with ten payments stored or ten
    million. A lookup added to the statement without an index fails here."""
    engine = create_engine(make_database_url(request, "postgres", tmp_path))
    settler = PgPaymentSettler(engine)
    try:
        async with (await settler._connections()).acquire() as conn:  # its session, as is
            await conn.execute("PREPARE confirm_batch AS " + CONFIRM_BATCH_SQL)
            arity = len(set(re.findall(r"\$\d+", CONFIRM_BATCH_SQL)))
            nulls = ", ".join(["NULL"] * arity)
            explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE confirm_batch({nulls})")
            await conn.execute("DEALLOCATE confirm_batch")
    finally:
        await settler.aclose()
        await engine.dispose()
    nodes = _plan_nodes(json.loads(explained)[0]["Plan"])
    scanned = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    assert {"payments", "orders", "plans", "referrals"} <= scanned  # the plan was read
    whole = [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"]
    assert whole == []
