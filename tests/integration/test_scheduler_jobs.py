"""The scheduler's jobs and machinery on every store (memory, SQLite, PostgreSQL), with a
clock the test moves: lease rows of singleton jobs, the concurrent outbox drain and its
renewed leases, payment expiry, abandoned orders, panel drift, outbox retry."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import attrs
import pytest

from vpnshop.bootstrap import Storage
from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import ValidationError
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobStatus, OutboxJob
from vpnshop.domain.panel import PanelStatus
from vpnshop.domain.payment import PaymentStatus
from vpnshop.ports.payments import ProviderStatus
from vpnshop.services.deps import outbox_job
from vpnshop.services.drain import DrainLoop
from vpnshop.services.drift import CheckPanelDrift
from vpnshop.services.links import LinkNotReadyError
from vpnshop.services.maintenance import CleanupOrders, ExpirePayments
from vpnshop.services.outbox import OutboxAdmin, OutboxWorker, PermanentJobError
from vpnshop.services.periodic import JobRegistry, PeriodicJob, PeriodicRunner

from .shop import START, Shop, make_shop


@pytest.fixture
async def shop(uow_factory: Storage) -> Shop:
    return await make_shop(uow_factory)


# -- the registry and singleton leases ---------------------------------------------------


async def _nothing() -> None:
    return None


def test_registry_refuses_duplicate_and_malformed_names() -> None:
    """A job name is registered once and must be a short lower-case identifier."""
    registry = JobRegistry([PeriodicJob("recheck", 60, _nothing)])
    with pytest.raises(ValidationError):
        registry.add(PeriodicJob("recheck", 30, _nothing))
    with pytest.raises(ValidationError):
        PeriodicJob("Re Check", 60, _nothing)
    with pytest.raises(ValidationError):
        PeriodicJob("zero", 0, _nothing)
    assert registry.names() == ["recheck"]


async def test_singleton_runs_in_one_replica_per_interval(shop: Shop) -> None:
    """Two runners on one store take turns on a singleton: one run per interval in all."""
    runs: list[str] = []

    def job(who: str) -> PeriodicJob:
        async def run() -> None:
            runs.append(who)

        return PeriodicJob("sweep", 60, run)

    a = PeriodicRunner(shop.deps, JobRegistry([job("a")]), holder="a")
    b = PeriodicRunner(shop.deps, JobRegistry([job("b")]), holder="b")
    assert await a.tick(job("a")) is True
    assert await b.tick(job("b")) is False  # ran a moment ago, in the other replica
    shop.clock.advance(30)
    assert await a.tick(job("a")) is False
    shop.clock.advance(31)
    assert await b.tick(job("b")) is True
    assert runs == ["a", "b"]
    assert b.stats["sweep"].runs == 1 and a.stats["sweep"].skipped == 1


async def test_a_dead_holders_singleton_lease_lapses(shop: Shop) -> None:
    """A lease taken by a process that died is taken over once it lapses, not before."""
    async with shop.uow() as uow:
        now = shop.clock.now()
        taken = await uow.leases.acquire("sweep", "dead", now, now + timedelta(seconds=30), now)
        await uow.commit()
    assert taken
    runs: list[int] = []

    async def run() -> None:
        runs.append(1)

    job = PeriodicJob("sweep", 5, run)
    runner = PeriodicRunner(shop.deps, JobRegistry([job]), holder="alive", lease=30)
    assert await runner.tick(job) is False
    shop.clock.advance(31)
    assert await runner.tick(job) is True and runs == [1]


async def test_a_failing_job_is_counted_and_the_runner_goes_on(shop: Shop) -> None:
    """A job that raises is logged and counted as a failure; the next tick runs it again."""

    async def boom() -> None:
        raise RuntimeError("boom")

    job = PeriodicJob("boom", 1, boom, singleton=False)
    runner = PeriodicRunner(shop.deps, JobRegistry([job]), holder="x")
    assert await runner.tick(job) and await runner.tick(job)
    assert runner.stats["boom"].failures == 2


async def test_stop_lets_the_job_in_hand_finish(shop: Shop) -> None:
    """Stopping the runner waits for a running job to end instead of cutting it."""
    started, finished = asyncio.Event(), []

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(1)

    runner = PeriodicRunner(shop.deps, JobRegistry([PeriodicJob("slow", 60, slow)]), holder="x")
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await started.wait()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert finished == [1]


# -- the outbox drain --------------------------------------------------------------------


async def _enqueue(shop: Shop, n: int, kind: str = "probe") -> None:
    async with shop.uow() as uow:
        for i in range(n):
            await uow.outbox.add(outbox_job(shop.clock.now(), kind, f"{kind}:{i}", n=i))
        await uow.commit()


async def test_drain_runs_jobs_concurrently_within_the_bound(shop: Shop) -> None:
    """Due jobs run concurrently, never more at once than the bound, each exactly once."""
    await _enqueue(shop, 30)
    running, peak, seen = 0, 0, []

    async def probe(job: OutboxJob) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        seen.append(job.payload["n"])
        running -= 1

    loop = DrainLoop(OutboxWorker(shop.deps, {"probe": probe}), concurrency=5, interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    for _ in range(200):
        if len(seen) == 30:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted(seen) == list(range(30))
    assert 1 < peak <= 5
    assert loop.stats.done == 30


async def test_a_kick_drains_at_once_and_stop_finishes_the_jobs_in_hand(shop: Shop) -> None:
    """A commit's kick starts its jobs without waiting for the poll, and stopping the
    loop lets a running job finish and record its outcome."""
    started, release, done = asyncio.Event(), asyncio.Event(), []

    async def probe(job: OutboxJob) -> None:
        started.set()
        await release.wait()
        done.append(job.id)

    loop = DrainLoop(OutboxWorker(shop.deps, {"probe": probe}), interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.05)  # the loop's first look found nothing; now it sleeps
    await _enqueue(shop, 1)
    loop.kick()
    await asyncio.wait_for(started.wait(), 2)  # long before the hour-long poll
    stop.set()
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the job in hand
    release.set()
    await asyncio.wait_for(task, 5)
    async with shop.uow() as uow:
        job = await uow.outbox.get(done[0])
    assert job is not None and job.status is JobStatus.DONE


async def test_a_notice_waiting_for_its_panel_user_is_sent_within_a_second(shop: Shop) -> None:
    """A purchase notice that ran before its apply job made the link is retried after a
    fraction of a second, and the drain looks again then, not at its next poll."""
    await _enqueue(shop, 1)
    tries: list[float] = []

    async def notice(job: OutboxJob) -> None:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise LinkNotReadyError("subscription 1: the panel user is not made yet")

    loop = DrainLoop(OutboxWorker(shop.deps, {"probe": notice}), interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    for _ in range(100):
        if tries:
            break
        await asyncio.sleep(0.01)
    async with shop.uow() as uow:
        (job,) = await uow.outbox.listing()
    assert job.due_at - shop.clock.now() < timedelta(seconds=1)  # not the 2 s of a failure
    shop.clock.advance(1)
    for _ in range(200):
        if len(tries) == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(tries) == 2
    assert tries[1] - tries[0] < 1.5  # long before the hour-long poll
    assert loop.stats.done == 1


async def test_a_running_jobs_lease_is_renewed_and_a_dead_ones_lapses(shop: Shop) -> None:
    """While a job runs its short lease is renewed, so nobody else claims it; once its
    holder stops renewing, another worker takes it over after one lease."""
    await _enqueue(shop, 1)
    release = asyncio.Event()

    async def hold(job: OutboxJob) -> None:
        await release.wait()

    lease = timedelta(seconds=0.3)
    worker = OutboxWorker(shop.deps, {"probe": hold}, lease=lease)
    holder = DrainLoop(worker, concurrency=1, interval=0.05)  # busy: claims nothing more
    other = OutboxWorker(shop.deps, {"probe": hold}, lease=lease)
    stop = asyncio.Event()
    task = asyncio.create_task(holder.run(stop))
    while holder.in_flight == 0:
        await asyncio.sleep(0.01)
    for _ in range(3):  # well past the first lease, renewed each time
        shop.clock.advance(0.2)
        await asyncio.sleep(0.25)
        assert await other.claim(10) == []
    task.cancel()  # the holder dies without finishing: its renewals stop
    await asyncio.gather(task, return_exceptions=True)
    shop.clock.advance(0.31)
    taken = await other.claim(10)
    assert [j.dedupe_key for j in taken] == ["probe:0"]
    release.set()


async def test_failing_jobs_back_off_then_park_with_the_reason(shop: Shop) -> None:
    """A failing job is retried later (backoff), and parked with its last error after the
    configured attempts; a permanent error parks at once."""
    await _enqueue(shop, 1)
    await _enqueue(shop, 1, kind="hopeless")

    async def flaky(job: OutboxJob) -> None:
        raise ConnectionError("panel down")

    async def hopeless(job: OutboxJob) -> None:
        raise PermanentJobError("no such user")

    worker = OutboxWorker(shop.deps, {"probe": flaky, "hopeless": hopeless}, max_attempts=3)
    first = await worker.run_once()
    assert (first.retried, first.parked) == (1, 1)
    assert (await worker.run_once()).total == 0  # the retry is not due yet
    for _ in range(2):
        shop.clock.advance(timedelta(hours=2))
        await worker.run_once()
    parked = await OutboxAdmin(shop.deps).jobs(parked_only=True)
    reasons = {j.kind: j.last_error for j in parked}
    assert reasons == {
        "probe": "ConnectionError: panel down",
        "hopeless": "PermanentJobError: no such user",
    }


async def test_retry_makes_a_parked_job_due_again(shop: Shop) -> None:
    """`outbox retry` requeues a parked job with fresh attempts; others are refused."""
    await _enqueue(shop, 2)
    async with shop.uow() as uow:
        jobs = await uow.outbox.listing()
        await uow.outbox.park(jobs[0].id or 0, "boom")
        await uow.commit()
    admin = OutboxAdmin(shop.deps)
    parked_id = jobs[0].id or 0
    assert await admin.retry(jobs[1].id or 0, Actor.system("test")) is False  # pending
    assert await admin.retry(parked_id, Actor.system("test")) is True
    async with shop.uow() as uow:
        job = await uow.outbox.get(parked_id)
    assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert await admin.retry_all_parked(Actor.system("test")) == 0


# -- payments and orders -----------------------------------------------------------------


async def test_expiry_asks_the_provider_before_closing(shop: Shop) -> None:
    """Past their lifetime, a payment the provider saw paid is confirmed (credited once),
    an unpaid one expires, and one the provider cannot answer for stays open."""
    cid = await shop.customer(301)
    paid = await shop.checkout(cid, "fake", topup=Money(20000, RUB))
    unpaid = await shop.checkout(cid, "fake", topup=Money(30000, RUB))
    ext = shop.gateway.event(payment_ref=paid.payment_id).external_id
    assert ext is not None
    shop.gateway.set_status(ext, ProviderStatus.SUCCEEDED)
    expire = ExpirePayments(shop.deps, shop.app.gateways, shop.confirm)
    assert (await expire(timedelta(hours=1))).expired == 0  # not old enough
    shop.clock.advance(timedelta(hours=2))
    shop.gateway.unavailable = True
    assert (await expire(timedelta(hours=1))).kept == 2
    shop.gateway.unavailable = False
    report = await expire(timedelta(hours=1))
    assert (report.confirmed, report.expired, report.kept) == (1, 1, 0)
    assert (await expire(timedelta(hours=1))).expired == 0
    async with shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(20000, RUB)
        p_paid = await uow.payments.get(paid.payment_id)
        p_unpaid = await uow.payments.get(unpaid.payment_id)
    assert p_paid is not None and p_paid.status is PaymentStatus.SUCCEEDED
    assert p_unpaid is not None and p_unpaid.status is PaymentStatus.EXPIRED


async def test_abandoned_orders_are_removed_and_paid_ones_kept(shop: Shop) -> None:
    """Orders older than the age with nothing referring to them are deleted; an order
    with a payment is kept whatever its age."""
    cid = await shop.customer(302)
    link = await shop.checkout(cid, "fake", topup=Money(20000, RUB))
    async with shop.uow() as uow:
        payment = await uow.payments.get(link.payment_id)
        assert payment is not None
        amount = Money(500, RUB)
        for i in range(3):
            await uow.orders.add(
                Order(f"ord-abandoned-{i}", cid, OrderKind.TOPUP, amount, amount, created_at=START)
            )
        await uow.commit()
    cleanup = CleanupOrders(shop.deps, batch=2)
    assert await cleanup(timedelta(hours=48)) == 0
    shop.clock.advance(timedelta(hours=49))
    assert await cleanup(timedelta(hours=48)) == 3
    async with shop.uow() as uow:
        assert await uow.orders.get(payment.order_id) is not None
        assert await uow.orders.get("ord-abandoned-0") is None


# -- panel drift -------------------------------------------------------------------------


async def test_drift_reapplies_the_shops_users_and_leaves_others_alone(shop: Shop) -> None:
    """A changed or deleted shop user becomes an apply job that repairs it; users without
    the shop's tag and orphans are reported, never touched."""
    subs = []
    for tg in (401, 402, 403):
        cid = await shop.customer(tg)
        sub = await shop.extend(cid, 30, actor=Actor.system("test"), reason=f"t{tg}")
        subs.append(sub)
    drift = CheckPanelDrift(shop.deps, shop.panel, shop.panel.tag)
    assert (await drift()).enqueued == 0  # their applies are queued: not drift
    await shop.outbox.drain()
    assert (await drift()).enqueued == 0
    async with shop.uow() as uow:
        linked = [await uow.subscriptions.get(s.id) for s in subs]
    keys = [s.panel_key for s in linked if s is not None]
    assert len(keys) == 3 and all(keys)
    moved = shop.panel.users[keys[0]]
    shop.panel.users[keys[0]] = attrs.evolve(moved, expires_at=moved.expires_at + timedelta(days=9))
    del shop.panel.users[keys[1]]
    foreign = shop.panel.add_foreign_user("someone_else", tag="OTHER")
    orphan = shop.panel.add_foreign_user("old_shop_user", tag=shop.panel.tag)
    before = dict(shop.panel.users)
    report = await drift()
    assert (report.differing, report.missing, report.enqueued) == (1, 1, 2)
    assert report.foreign == 1 and report.orphans == (orphan.key,)
    assert shop.panel.users == before  # a report changes nothing by itself
    await shop.outbox.drain()
    assert (await drift()).enqueued == 0  # repaired
    assert shop.panel.users[foreign.key] == foreign
    assert shop.panel.users[orphan.key].status is PanelStatus.ACTIVE


async def test_drift_never_reapplies_a_user_that_lost_the_shops_tag(shop: Shop) -> None:
    """A subscription whose panel user no longer carries the shop's tag is reported and
    not queued: the shop never writes to users it does not own."""
    cid = await shop.customer(404)
    sub = await shop.extend(cid, 30, actor=Actor.system("test"), reason="t")
    await shop.outbox.drain()
    async with shop.uow() as uow:
        stored = await uow.subscriptions.get(sub.id or 0)
    assert stored is not None and stored.panel_key
    user = shop.panel.users[stored.panel_key]
    shop.panel.users[stored.panel_key] = attrs.evolve(user, tag="ADMIN", device_limit=99)
    report = await CheckPanelDrift(shop.deps, shop.panel, shop.panel.tag)()
    assert (report.not_owned, report.enqueued) == (1, 0)
