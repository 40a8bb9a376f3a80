"""The outbox: idempotent adds, leased claims that never share a job, retry, park and
complete."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import attrs

from tests.contract.storage.builders import (
    T0,
    Factory,
    new_job,
)
from vpnshop.domain.outbox import JobKind, JobStatus


async def test_outbox_add_dedupes_and_round_trips(uow_factory: Factory) -> None:
    """add() is True once per dedupe key; the job comes back with an id and its payload."""
    job = new_job("notify:1", payload={"chat_id": 7, "text": "paid", "nested": {"n": [1, 2]}})
    async with uow_factory() as uow:
        assert await uow.outbox.add(job) is True
        assert await uow.outbox.add(new_job("notify:1", payload={"other": 1})) is False
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
        new_job("a", due_at=T0 - timedelta(seconds=5)),
        new_job("b", due_at=T0 - timedelta(seconds=10), kind=JobKind.APPLY_SUBSCRIPTION),
        new_job("c", due_at=T0),
        new_job("future", due_at=T0 + timedelta(seconds=1)),
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
        await uow.outbox.add(new_job("lease"))
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
            await uow.outbox.add(new_job(key))
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


async def test_outbox_complete_many_finishes_exactly_those_jobs(uow_factory: Factory) -> None:
    """complete_many() marks every named job done, releases its lease and leaves the
    others alone."""
    async with uow_factory() as uow:
        for key in ("a", "b", "c"):
            await uow.outbox.add(new_job(key))
        await uow.commit()
    async with uow_factory() as uow:
        ids = {j.dedupe_key: j.id for j in await uow.outbox.claim(T0, T0 + timedelta(minutes=1))}
        await uow.outbox.complete_many([i for k, i in ids.items() if k != "b" and i is not None])
        await uow.outbox.complete_many([])
        await uow.commit()
    async with uow_factory() as uow:
        states = {}
        for key, job_id in ids.items():
            assert job_id is not None
            job = await uow.outbox.get(job_id)
            assert job is not None
            states[key] = (job.status, job.locked_until is None)
    assert states == {
        "a": (JobStatus.DONE, True),
        "b": (JobStatus.PENDING, False),
        "c": (JobStatus.DONE, True),
    }


async def test_outbox_uncommitted_claim_is_rolled_back(uow_factory: Factory) -> None:
    """A claim in a unit of work that is not committed leaves the job free."""
    async with uow_factory() as uow:
        await uow.outbox.add(new_job("free"))
        await uow.commit()
    async with uow_factory() as uow:
        assert len(await uow.outbox.claim(T0, T0 + timedelta(minutes=1))) == 1
    async with uow_factory() as uow:
        [job] = await uow.outbox.claim(T0, T0 + timedelta(minutes=1))
    assert job.attempts == 1


async def test_concurrent_outbox_claims_never_share_a_job(uow_factory: Factory) -> None:
    """10 concurrent claimers of 30 due jobs together get each job exactly once."""
    async with uow_factory() as uow:
        for i in range(30):
            await uow.outbox.add(new_job(f"job:{i}"))
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
