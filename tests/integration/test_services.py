"""The money use cases on every storage backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.integration.shop import ADMIN, START, Shop, make_shop
from vpnshop.domain.actor import Actor, ActorKind
from vpnshop.domain.errors import (
    AmountMismatchError,
    CustomerBannedError,
    InsufficientFundsError,
    NotFoundError,
    PromoError,
    TrialAlreadyUsedError,
    ValidationError,
)
from vpnshop.domain.ledger import EntryKind, HoldStatus
from vpnshop.domain.money import RUB, USD, Money
from vpnshop.domain.outbox import JobKind, JobStatus
from vpnshop.domain.payment import PaymentStatus
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.payments import AmountOutOfRangeError, EventKind, ProviderStatus
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.outcome import Outcome

Factory = Callable[[], UnitOfWork]


@pytest.fixture
async def shop(uow_factory: Factory) -> Shop:
    return await make_shop(uow_factory)


async def test_credit_is_idempotent_and_attributed(shop: Shop) -> None:
    """Crediting twice with one key credits once, with the actor on the ledger entry."""
    cid = await shop.customer(100)
    assert await shop.credit(
        cid, Money(500, RUB), kind=EntryKind.PROMO_CREDIT, key="k1", actor=ADMIN
    )
    assert not await shop.credit(
        cid, Money(500, RUB), kind=EntryKind.PROMO_CREDIT, key="k1", actor=ADMIN
    )
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(500, RUB)
        [entry] = await uow.ledger.entries(cid)
        assert entry.actor.kind is ActorKind.ADMIN
        latest = (await uow.audit.recent(limit=1))[0]
        assert latest.action == "balance.promo_credit"


async def test_adjustment_below_zero_changes_nothing(shop: Shop) -> None:
    """An admin debit larger than the balance is refused and leaves no trace."""
    cid = await shop.customer(101)
    await shop.adjust(cid, Money(300, RUB), admin=ADMIN, reason="gift", key="a1")
    with pytest.raises(InsufficientFundsError):
        await shop.adjust(cid, Money(-301, RUB), admin=ADMIN, reason="oops", key="a2")
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(300, RUB)
        assert not await uow.ledger.has_key("a2")
    assert await shop.verify() == []


async def test_checkout_then_confirm_extends_from_expiry(shop: Shop) -> None:
    """A confirmed plan payment extends from max(now, expiry) and enqueues panel and
    customer jobs in the same transaction."""
    cid = await shop.customer(102)
    await shop.extend(cid, 5, actor=ADMIN, reason="gift")
    link = await shop.checkout(cid, "fake", plan_code="month")
    assert link.order.amount == Money(19900, RUB)  # priced on the server
    assert link.url is not None
    assert shop.gateway.requests[-1].idempotency_key == f"pay:{link.payment_id}"
    event = shop.gateway.event(payment_ref=link.payment_id)
    assert await shop.confirm(event) is Outcome.CONFIRMED
    async with shop.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
        [sub] = await uow.subscriptions.for_customer(cid)
    assert payment is not None and payment.status is PaymentStatus.SUCCEEDED
    assert sub.expires_at == START + timedelta(days=5 + 30)
    assert sub.plan_code == "month"
    jobs = await shop.jobs()
    assert f"apply:{sub.id}:payment:{link.payment_id}" in jobs
    assert f"notify:paid:{link.payment_id}" in jobs
    assert shop.kicks


async def test_confirm_twice_is_a_duplicate(shop: Shop) -> None:
    """A redelivered confirmation changes nothing."""
    cid = await shop.customer(103)
    link = await shop.checkout(cid, "fake", plan_code="month")
    event = shop.gateway.event(payment_ref=link.payment_id)
    assert await shop.confirm(event) is Outcome.CONFIRMED
    assert await shop.confirm(event) is Outcome.DUPLICATE
    async with shop.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    assert sub.expires_at == START + timedelta(days=30)


async def test_amount_mismatch_is_never_credited(shop: Shop) -> None:
    """A provider confirming another amount or currency is refused, audited and reported,
    and the payment stays open."""
    cid = await shop.customer(104)
    link = await shop.checkout(cid, "fake", topup=Money(50000, RUB))
    for wrong in (Money(100, RUB), Money(50000, USD)):
        with pytest.raises(AmountMismatchError):
            await shop.confirm(
                shop.gateway.event(
                    payment_ref=link.payment_id, amount=wrong, dedupe_key=f"x{wrong}"
                )
            )
    async with shop.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
        assert payment is not None and payment.status is PaymentStatus.PENDING
        assert await uow.ledger.balance(cid, RUB) == Money(0, RUB)
        assert "payment.amount_mismatch" in [a.action for a in await uow.audit.recent()]
    assert any(k.startswith("mismatch:") for k in await shop.jobs(JobKind.NOTIFY_ADMINS))


async def test_unknown_and_foreign_payments_are_not_applied(shop: Shop) -> None:
    """Events for payments we do not have, or of another provider, change nothing."""
    cid = await shop.customer(105)
    link = await shop.checkout(cid, "fake", topup=Money(50000, RUB))
    assert (
        await shop.confirm(shop.gateway.event(payment_ref="nope", amount=Money(1, RUB)))
        is Outcome.UNKNOWN
    )
    foreign = shop.no_refund.event(payment_ref=link.payment_id, amount=Money(50000, RUB))
    assert await shop.confirm(foreign) is Outcome.UNKNOWN
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(0, RUB)


async def test_topup_credits_through_the_ledger(shop: Shop) -> None:
    """A confirmed top-up is one TOPUP ledger entry by the provider."""
    cid = await shop.customer(106)
    link = await shop.checkout(cid, "fake", topup=Money(25000, RUB))
    await shop.confirm(shop.gateway.event(payment_ref=link.payment_id))
    async with shop.uow() as uow:
        [entry] = await uow.ledger.entries(cid)
    assert (entry.kind, entry.amount, str(entry.actor)) == (
        EntryKind.TOPUP,
        Money(25000, RUB),
        "provider:fake",
    )


async def test_checkout_limits_and_pricing_errors(shop: Shop) -> None:
    """Amounts outside the provider's limits, unknown plans and bad promos are refused
    before anything is stored."""
    cid = await shop.customer(107)
    with pytest.raises(AmountOutOfRangeError):
        await shop.checkout(cid, "fake", topup=Money(99, RUB))
    with pytest.raises(ValidationError):
        await shop.checkout(cid, "nope", plan_code="month")
    with pytest.raises(PromoError):
        await shop.checkout(cid, "fake", plan_code="month", promo_code="NOSUCH")
    assert shop.gateway.requests == []


async def test_promo_discount_is_snapshotted_and_redeemed_once(shop: Shop) -> None:
    """A discount is priced into the order and counted when the payment succeeds."""
    cid = await shop.customer(108)
    async with shop.uow() as uow:
        await uow.promos.add(
            PromoCode(
                code="SALE20", kind=PromoKind.DISCOUNT, value=20, max_uses=1, created_at=START
            )
        )
        await uow.commit()
    link = await shop.checkout(cid, "fake", plan_code="month", promo_code="sale20")
    assert link.order.amount == Money(15920, RUB)
    assert link.order.discount_percent == 20
    await shop.confirm(shop.gateway.event(payment_ref=link.payment_id))
    async with shop.uow() as uow:
        promo = await uow.promos.get("SALE20")
    assert promo is not None and promo.uses == 1
    with pytest.raises(PromoError):
        await shop.checkout(cid, "fake", plan_code="month", promo_code="SALE20")


async def test_once_only_promo_is_refused_at_pricing_after_use(shop: Shop) -> None:
    """A customer who redeemed a once-only code cannot price a second order with it, even
    while the code has uses left for others."""
    cid = await shop.customer(120)
    async with shop.uow() as uow:
        await uow.promos.add(
            PromoCode(code="ONCE10", kind=PromoKind.DISCOUNT, value=10, created_at=START)
        )
        await uow.commit()
    link = await shop.checkout(cid, "fake", plan_code="month", promo_code="ONCE10")
    await shop.confirm(shop.gateway.event(payment_ref=link.payment_id))
    with pytest.raises(PromoError) as refused:
        await shop.checkout(cid, "fake", plan_code="month", promo_code="ONCE10")
    assert refused.value.reason == "already_used"
    other = await shop.customer(121)
    assert (
        await shop.checkout(other, "fake", plan_code="month", promo_code="ONCE10")
    ).order.discount_percent == 10


async def test_pay_from_balance_holds_then_captures(shop: Shop) -> None:
    """Paying from balance debits once through a hold that is captured on fulfilment."""
    cid = await shop.customer(109)
    await shop.credit(cid, Money(30000, RUB), kind=EntryKind.PROMO_CREDIT, key="c", actor=ADMIN)
    payment = await shop.pay_from_balance(cid, "month", RUB, actor=Actor.customer(109))
    assert payment.status is PaymentStatus.SUCCEEDED
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(30000 - 19900, RUB)
        hold = await uow.holds.get(f"h_{payment.order_id}")
        [sub] = await uow.subscriptions.for_customer(cid)
    assert hold is not None and hold.status is HoldStatus.CAPTURED
    assert sub.expires_at == START + timedelta(days=30)
    with pytest.raises(InsufficientFundsError):
        await shop.pay_from_balance(cid, "month", RUB, actor=Actor.customer(109))
    assert await shop.verify() == []


async def test_pay_from_balance_releases_on_failure(uow_factory: Factory) -> None:
    """When fulfilment fails, the hold is released and the money is back."""
    shop = await make_shop(lambda: FailingFulfilment(uow_factory()))
    cid = await shop.customer(110)
    await shop.credit(cid, Money(30000, RUB), kind=EntryKind.PROMO_CREDIT, key="c", actor=ADMIN)
    FailingFulfilment.armed = True
    try:
        with pytest.raises(RuntimeError, match="panel of doom"):
            await shop.pay_from_balance(
                cid, "month", RUB, actor=Actor.customer(110), order_id="o-fail"
            )
    finally:
        FailingFulfilment.armed = False
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(30000, RUB)
        hold = await uow.holds.get("h_o-fail")
        payment = await uow.payments.get("b_o-fail")
        kinds = sorted(e.kind.value for e in await uow.ledger.entries(cid))
        assert await uow.subscriptions.for_customer(cid) == []
    assert hold is not None and hold.status is HoldStatus.RELEASED
    assert payment is not None and payment.status is PaymentStatus.CANCELED
    assert kinds == ["hold", "promo_credit", "release"]
    assert await shop.verify() == []


class FailingFulfilment:
    """A unit of work whose fulfilment fails while ``armed`` (subscription writes, or the
    one-statement settlement where the store has it); everything else is the real store."""

    armed = False

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    @property
    def subscriptions(self) -> object:
        real = self._inner.subscriptions
        if not FailingFulfilment.armed:
            return real

        class Broken:
            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

            async def add(self, *_: object) -> None:
                raise RuntimeError("panel of doom")

            update = add

        return Broken()

    def can_settle(self, effects: object) -> bool:
        return bool(getattr(self._inner, "can_settle", lambda _: False)(effects))

    async def settle(self, *args: object, **kwargs: object) -> object:
        if FailingFulfilment.armed:
            raise RuntimeError("panel of doom")
        return await self._inner.settle(*args, **kwargs)  # type: ignore[attr-defined]

    async def __aenter__(self) -> FailingFulfilment:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.__aexit__(*exc)  # type: ignore[arg-type]


async def test_trial_once(shop: Shop) -> None:
    """The free trial is given once per customer, ever."""
    cid = await shop.customer(111)
    sub = await shop.trial(cid)
    assert sub.is_trial and sub.expires_at == START + timedelta(days=3)
    with pytest.raises(TrialAlreadyUsedError):
        await shop.trial(cid)


async def test_outbox_applies_to_panel_and_survives_outage(shop: Shop) -> None:
    """The apply job reaches the panel; during an outage it waits with backoff, then
    succeeds, and the panel link is stored on the subscription."""
    cid = await shop.customer(112)
    await shop.extend(cid, 10, actor=ADMIN, reason="gift")
    shop.panel.down = True
    report = await shop.outbox.run_once()
    assert (report.done, report.retried) == (0, 1)
    assert await shop.outbox.run_once() == type(report)()  # not due yet
    shop.panel.down = False
    shop.clock.advance(timedelta(minutes=5))
    assert (await shop.outbox.drain()).done == 1
    async with shop.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
    assert sub.panel_key is not None
    user = shop.panel.users[sub.panel_key]
    assert user.expires_at == sub.expires_at
    assert user.telegram_id == 112


async def test_outbox_parks_permanent_failures(shop: Shop) -> None:
    """A job that can never succeed is parked with its reason, not retried forever."""
    async with shop.uow() as uow:
        await uow.outbox.add(
            __import__("vpnshop.domain.outbox", fromlist=["OutboxJob"]).OutboxJob(
                kind=JobKind.APPLY_SUBSCRIPTION,
                payload={"subscription_id": 999999},
                dedupe_key="ghost",
                due_at=START,
                created_at=START,
            )
        )
        await uow.commit()
    assert (await shop.outbox.run_once()).parked == 1
    async with shop.uow() as uow:
        [job] = await uow.outbox.parked()
    assert job.status is JobStatus.PARKED and "999999" in (job.last_error or "")


async def test_refund_through_provider_shortens_subscription(shop: Shop) -> None:
    """A half refund through the provider removes half the days, once."""
    cid = await shop.customer(113)
    link = await shop.checkout(cid, "fake", plan_code="month")
    event = shop.gateway.event(payment_ref=link.payment_id)
    assert event.external_id is not None
    shop.gateway.set_status(event.external_id, ProviderStatus.SUCCEEDED)  # the customer paid
    await shop.confirm(event)
    result = await shop.refund(
        link.payment_id, admin=ADMIN, reason="asked", amount=Money(9950, RUB)
    )
    assert (result.days_removed, result.to_balance) == (15, False)
    assert len(shop.gateway.refunds) == 1
    async with shop.uow() as uow:
        [sub] = await uow.subscriptions.for_customer(cid)
        payment = await uow.payments.get(link.payment_id)
    assert sub.expires_at == START + timedelta(days=15)
    assert payment is not None and payment.refunded == Money(9950, RUB)
    await shop.refund(link.payment_id, admin=ADMIN, reason="rest")
    async with shop.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
    assert payment is not None and payment.status is PaymentStatus.REFUNDED
    with pytest.raises(ValidationError):
        await shop.refund(link.payment_id, admin=ADMIN, reason="again")


async def test_refund_without_provider_api_goes_to_balance(shop: Shop) -> None:
    """A provider without a refund API refunds to the balance, ledgered."""
    cid = await shop.customer(114)
    link = await shop.checkout(cid, "norefund", plan_code="month")
    await shop.confirm(shop.no_refund.event(payment_ref=link.payment_id))
    result = await shop.refund(link.payment_id, admin=ADMIN, reason="asked")
    assert result.to_balance and result.days_removed == 30
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(19900, RUB)
    assert await shop.verify() == []


async def test_recheck_confirms_a_lost_webhook(shop: Shop) -> None:
    """A pending payment the provider says succeeded is confirmed by the re-check."""
    cid = await shop.customer(115)
    link = await shop.checkout(cid, "fake", topup=Money(20000, RUB))
    external_id = shop.gateway.event(payment_ref=link.payment_id).external_id
    assert external_id is not None
    shop.gateway.set_status(external_id, ProviderStatus.SUCCEEDED)  # paid; webhook lost
    assert (await shop.recheck(timedelta(minutes=10))).checked == 0  # too fresh
    shop.clock.advance(timedelta(minutes=11))
    report = await shop.recheck(timedelta(minutes=10))
    assert (report.checked, report.confirmed) == (1, 1)
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(20000, RUB)
        payment = await uow.payments.get(link.payment_id)
    assert payment is not None and payment.status is PaymentStatus.SUCCEEDED


async def test_provider_subscription_extends_once(shop: Shop) -> None:
    """A signed provider subscription event (Tribute) extends once per period."""
    event = shop.gateway.event(
        EventKind.SUBSCRIPTION_STARTED,
        telegram_id=116,
        product="month",
        amount=Money(19900, RUB),
        dedupe_key="trib:1:116:2026-12-23",
    )
    assert await shop.confirm(event) is Outcome.CONFIRMED
    assert await shop.confirm(event) is Outcome.DUPLICATE
    unknown = shop.gateway.event(
        EventKind.SUBSCRIPTION_RENEWED,
        telegram_id=116,
        product="nope",
        amount=Money(1, RUB),
        dedupe_key="trib:x",
    )
    assert await shop.confirm(unknown) is Outcome.IGNORED
    async with shop.uow() as uow:
        customer = await uow.customers.by_telegram_id(116)
        assert customer is not None and customer.id is not None
        [sub] = await uow.subscriptions.for_customer(customer.id)
    assert sub.expires_at == START + timedelta(days=30)


async def test_referral_reward_once_per_payment(uow_factory: Factory) -> None:
    """The referrer earns the configured share of each referee payment exactly once."""
    shop = await make_shop(uow_factory, ReferralPolicy(percent=10, referee_bonus_days=7))
    referrer = await shop.customer(117)
    referee = await shop.customer(118, referrer_telegram_id=117)
    link = await shop.checkout(referee, "fake", plan_code="month")
    event = shop.gateway.event(payment_ref=link.payment_id)
    await shop.confirm(event)
    await shop.confirm(event)
    async with shop.uow() as uow:
        assert await uow.ledger.balance(referrer, RUB) == Money(1990, RUB)
        [sub] = await uow.subscriptions.for_customer(referee)
    assert sub.expires_at == START + timedelta(days=30 + 7)


async def test_self_referral_and_cycles_are_dropped(shop: Shop) -> None:
    """A referral to oneself is ignored; the customer still registers."""
    cid = await shop.customer(119, referrer_telegram_id=119)
    async with shop.uow() as uow:
        assert await uow.referrals.referrer_of(cid) is None


async def test_missing_and_banned_customers_cannot_buy(shop: Shop) -> None:
    """Checkout, paying from the balance and the trial refuse a missing or banned customer,
    and store nothing for them."""
    cid = await shop.customer(130)
    await shop.credit(cid, Money(30000, RUB), kind=EntryKind.PROMO_CREDIT, key="c", actor=ADMIN)
    async with shop.uow() as uow:
        customer = await uow.customers.get(cid)
        assert customer is not None
        await uow.customers.update(customer.banned_as(True))
        await uow.commit()
    buyer = Actor.customer(130)
    for who, error in ((cid, CustomerBannedError), (cid + 1000, NotFoundError)):
        with pytest.raises(error):
            await shop.checkout(who, "fake", plan_code="month")
        with pytest.raises(error):
            await shop.pay_from_balance(who, "month", RUB, actor=buyer)
        with pytest.raises(error):
            await shop.trial(who)
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(30000, RUB)
        assert await uow.subscriptions.for_customer(cid) == []
        assert await uow.payments.recent(customer_id=cid) == []
    assert shop.gateway.requests == []


async def test_provider_subscription_cancellation_keeps_the_paid_time(shop: Shop) -> None:
    """A provider-run subscription's cancellation tells the customer once, is audited, and
    leaves the days already paid for; for an unknown customer it changes nothing."""
    started = shop.gateway.event(
        EventKind.SUBSCRIPTION_STARTED,
        telegram_id=131,
        product="month",
        amount=Money(19900, RUB),
        dedupe_key="trib:1:131:start",
    )
    assert await shop.confirm(started) is Outcome.CONFIRMED
    cancelled = shop.gateway.event(
        EventKind.SUBSCRIPTION_CANCELLED,
        telegram_id=131,
        product="month",
        dedupe_key="trib:1:131:cancel",
    )
    assert await shop.confirm(cancelled) is Outcome.CANCELED
    assert await shop.confirm(cancelled) is Outcome.DUPLICATE
    stranger = shop.gateway.event(
        EventKind.SUBSCRIPTION_CANCELLED, telegram_id=132, dedupe_key="trib:1:132:cancel"
    )
    assert await shop.confirm(stranger) is Outcome.UNKNOWN
    async with shop.uow() as uow:
        customer = await uow.customers.by_telegram_id(131)
        assert customer is not None and customer.id is not None
        [sub] = await uow.subscriptions.for_customer(customer.id)
        audit = await uow.audit.recent(subject=f"customer:{customer.id}")
        assert await uow.customers.by_telegram_id(132) is None
    assert sub.expires_at == START + timedelta(days=30)
    assert [a.action for a in audit].count("subscription.cancelled") == 1
    assert "notify:trib:1:131:cancel" in await shop.jobs(JobKind.NOTIFY_CUSTOMER)
    assert not [k for k in await shop.jobs() if "132" in k]
