"""Expiry reminders and auto-renewal from the balance, on every backend, with a clock the
test moves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.integration.shop import ADMIN, Shop, make_shop
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import RUB, Money
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.reminders import SendReminders
from vpnshop.services.renewals import RenewFromBalance, renewal_order_id

Factory = Callable[[], UnitOfWork]
DAY = timedelta(days=1)


@pytest.fixture
async def shop(uow_factory: Factory) -> Shop:
    return await make_shop(uow_factory)


async def notices(shop: Shop) -> list[tuple[int, str]]:
    """(customer, template) of every pending customer notification, by dedupe key order."""
    async with shop.uow() as uow:
        jobs = await uow.outbox.claim(shop.clock.now(), shop.clock.now(), 1000)
    jobs = sorted((j for j in jobs if j.kind == "notify_customer"), key=lambda j: j.dedupe_key)
    return [(int(j.payload["customer_id"]), str(j.payload["template"])) for j in jobs]  # type: ignore[call-overload]


async def reminder_keys(shop: Shop) -> list[str]:
    return [k for k in await shop.jobs("notify_customer") if k.startswith("remind:")]


async def buy(
    shop: Shop, telegram_id: int, days: int, *, auto_renew: bool = False
) -> tuple[int, int]:
    cid = await shop.customer(telegram_id)
    sub = await shop.extend(cid, days, actor=ADMIN, reason=f"gift:{telegram_id}", plan_code="month")
    assert sub.id is not None
    if auto_renew:
        async with shop.uow() as uow:
            await uow.subscriptions.set_auto_renew(sub.id, True)
            await uow.commit()
    return cid, sub.id


async def ten_days_of(shop: Shop, remind: SendReminders) -> list[tuple[int, str]]:
    """Run *remind* every 6 hours for ten days; the notices it left."""
    for _ in range(4 * 10):
        await remind()
        shop.clock.advance(timedelta(hours=6))
    return await notices(shop)


async def test_each_reminder_is_enqueued_once_per_offset_and_expiry(shop: Shop) -> None:
    """Walking the clock past expiry yields the 3-day, 1-day, at-expiry and 1-day-after
    reminders exactly once each, however often the job runs."""
    remind = SendReminders(shop.deps)
    _, sid = await buy(shop, 100, 10)
    seen: list[str] = []
    for _ in range(12 * 24 // 6 + 2):  # 12 days in 6-hour steps, running twice each time
        await remind()
        await remind()
        shop.clock.advance(timedelta(hours=6))
    seen = await reminder_keys(shop)
    offsets = [k.split(":")[2] for k in seen]
    assert sorted(offsets) == sorted(["259200", "86400", "0", "-86400"])
    assert all(k.startswith(f"remind:{sid}:") for k in seen)


async def test_an_extension_re_arms_the_reminders(shop: Shop) -> None:
    """After an extension the same offsets fire again for the new expiry."""
    remind = SendReminders(shop.deps, offsets=(DAY.days * 86400,))
    cid, _ = await buy(shop, 101, 3)
    shop.clock.advance(timedelta(days=2, hours=1))
    await remind()
    await shop.extend(cid, 30, actor=ADMIN, reason="again")
    shop.clock.advance(timedelta(days=30))
    await remind()
    await remind()
    assert len(await reminder_keys(shop)) == 2


async def test_a_reminder_due_as_the_subscription_starts_is_not_sent(shop: Shop) -> None:
    """A 3-day subscription is not told "3 days left" as it starts; its 1-day reminder
    still comes, and a 10-day one gets both."""
    remind = SendReminders(shop.deps, offsets=(3 * 86400, 86400))
    short, _ = await buy(shop, 110, 3)
    long, _ = await buy(shop, 111, 10)
    told = await ten_days_of(shop, remind)
    assert told.count((short, "subscription_expiring")) == 1
    assert told.count((long, "subscription_expiring")) == 2


async def test_an_auto_renewing_subscription_hears_from_its_renewal_not_a_reminder(
    shop: Shop,
) -> None:
    """With auto-renewal a day before expiry, the 1-day reminder is left to the renewal's
    own message; the 3-day one still goes, and without auto-renewal both do."""
    remind = SendReminders(shop.deps, offsets=(3 * 86400, 86400), renews_before=DAY)
    renewing, _ = await buy(shop, 112, 10, auto_renew=True)
    manual, _ = await buy(shop, 113, 10)
    told = await ten_days_of(shop, remind)
    assert told.count((renewing, "subscription_expiring")) == 1
    assert told.count((manual, "subscription_expiring")) == 2


async def test_banned_and_unreachable_customers_are_not_reminded(shop: Shop) -> None:
    """Reminders skip banned and unreachable customers; trials get the trial template."""
    remind = SendReminders(shop.deps, offsets=(86400,))
    banned, _ = await buy(shop, 102, 3)
    gone, _ = await buy(shop, 103, 3)
    trial = await shop.customer(104)
    await shop.trial(trial)
    async with shop.uow() as uow:
        c = await uow.customers.get(banned)
        assert c is not None
        await uow.customers.update(c.banned_as(True))
        await uow.customers.set_unreachable(gone, True)
        await uow.commit()
    shop.clock.advance(timedelta(days=2, hours=1))
    await remind()
    assert await notices(shop) == [(trial, "trial_ending")]


async def test_a_stale_backlog_is_not_sent_after_an_outage(shop: Shop) -> None:
    """A scheduler back after a week does not send week-old reminders."""
    remind = SendReminders(shop.deps, offsets=(86400,))
    await buy(shop, 105, 3)
    shop.clock.advance(timedelta(days=9))
    await remind()
    assert await reminder_keys(shop) == []


async def test_at_expiry_the_panel_user_is_updated(shop: Shop) -> None:
    """The at-expiry scan enqueues one panel update per subscription and expiry."""
    remind = SendReminders(shop.deps, notify=False)
    _, sid = await buy(shop, 106, 2)
    shop.clock.advance(timedelta(days=2, minutes=1))
    await remind()
    await remind()
    applies = [k for k in await shop.jobs("apply_subscription") if ":expired:" in k]
    assert len(applies) == 1 and applies[0].startswith(f"apply:{sid}:expired:")
    assert await reminder_keys(shop) == []


async def test_auto_renewal_holds_extends_and_captures_once(shop: Shop) -> None:
    """With enough balance the plan is renewed once for the period, the money is spent
    through a captured hold, and the ledger still balances."""
    renew = RenewFromBalance(shop.deps, RUB, days_before=1)
    cid, sid = await buy(shop, 110, 5, auto_renew=True)
    await shop.credit(cid, Money(50000, RUB), kind=EntryKind.TOPUP, key="t110", actor=ADMIN)
    async with shop.uow() as uow:
        before = await uow.subscriptions.get(sid)
    assert before is not None
    shop.clock.advance(timedelta(days=4, hours=1))
    report = await renew()
    assert report.renewed == 1
    assert (await renew()).renewed == 0
    async with shop.uow() as uow:
        after = await uow.subscriptions.get(sid)
        balance = await uow.ledger.balance(cid, RUB)
        order = await uow.orders.get(renewal_order_id(sid, before.expires_at))
        hold = await uow.holds.get(f"h_{renewal_order_id(sid, before.expires_at)}")
    assert after is not None and after.expires_at == before.expires_at + timedelta(days=30)
    assert balance == Money(50000 - 19900, RUB)
    assert order is not None and hold is not None and hold.status.value == "captured"
    assert await shop.verify() == []
    paid = [t for _, t in await notices(shop) if t in ("auto_renewed", "payment_received")]
    assert paid == ["auto_renewed"]  # one message for the renewal, not two


async def test_too_little_balance_tells_the_customer_once(shop: Shop) -> None:
    """Without enough balance nothing is charged and the customer is told once for the
    period, with a top-up button."""
    renew = RenewFromBalance(shop.deps, RUB, days_before=1)
    cid, _ = await buy(shop, 111, 5, auto_renew=True)
    shop.clock.advance(timedelta(days=4, hours=1))
    assert (await renew()).low_balance == 1
    await renew()
    shop.clock.advance(timedelta(hours=1))
    await renew()
    low = [k for k in await shop.jobs("notify_customer") if "renew-low" in k]
    assert len(low) == 1
    async with shop.uow() as uow:
        job = next(
            j
            for j in await uow.outbox.claim(shop.clock.now(), shop.clock.now(), 100)
            if "renew-low" in j.dedupe_key
        )
        assert await uow.ledger.balance(cid, RUB) == Money(0, RUB)
    assert job.payload["button"] == "topup" and job.payload["missing"] == str(Money(19900, RUB))


async def test_auto_renewal_switched_off_is_not_charged(shop: Shop) -> None:
    """A subscription whose customer switched auto-renewal off is never charged."""
    renew = RenewFromBalance(shop.deps, RUB, days_before=1)
    cid, _ = await buy(shop, 112, 5, auto_renew=False)
    await shop.credit(cid, Money(50000, RUB), kind=EntryKind.TOPUP, key="t112", actor=ADMIN)
    shop.clock.advance(timedelta(days=4, hours=1))
    assert (await renew()).renewed == 0
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(50000, RUB)


async def test_the_scheduler_runs_the_customer_jobs(shop: Shop) -> None:
    """The scheduler's registry holds the reminder and auto-renew jobs, and the broadcast
    job once a notifier is configured; reminders and renewals are singletons."""
    import attrs

    from vpnshop.testing.fakes import FakeNotifier
    from vpnshop_scheduler.jobs import build_registry

    names = build_registry(shop.app).names()
    assert {"reminders", "auto_renew"} <= set(names) and "broadcasts" not in names
    with_bot = build_registry(attrs.evolve(shop.app, notifier=FakeNotifier()))
    assert "broadcasts" in with_bot.names()
    assert all(with_bot.get(n).singleton for n in ("reminders", "auto_renew", "broadcasts"))  # type: ignore[union-attr]
