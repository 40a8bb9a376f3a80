"""The outbox worker: carries out side effects recorded by committed transactions.

A job is leased (so that other workers and replicas skip it), run, then completed,
retried with exponential backoff and jitter, or parked with its reason when retrying
cannot help. Leases are short and renewed while a job runs (``vpnshop.services.drain``),
so a crash mid-job only delays the job by one lease: it runs again elsewhere, which is why
every handler must be idempotent. The jobs of one claim run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import DomainError, NotFoundError, ValidationError
from vpnshop.domain.outbox import JobStatus, OutboxJob, backoff
from vpnshop.ports.notifier import RecipientUnreachableError, RetryLaterError
from vpnshop.ports.panel import PanelInvalidError, PanelNotOwnedError
from vpnshop.services.deps import Deps, record

log = logging.getLogger(__name__)

JobHandler = Callable[[OutboxJob], Awaitable[None]]


class PermanentJobError(DomainError):
    """A job that can never succeed as it is; it is parked for an admin."""

    code = "job_permanent"


class WaitingForSiblingError(Exception):
    """The job waits for another job committed with it (a purchase notice for the panel
    user its apply job is making, usually in the same drain at that moment): retried
    after a fraction of a second at first, not the seconds of a failure's backoff."""


SIBLING_SCALE = 0.1  # first retries after 0.2, 0.4, 0.8 s ...; the same 1 h cap after

PERMANENT: tuple[type[BaseException], ...] = (
    PermanentJobError,
    PanelInvalidError,
    PanelNotOwnedError,
    RecipientUnreachableError,
    NotFoundError,
    ValidationError,
)


@attrs.frozen
class RunReport:
    done: int = 0
    retried: int = 0
    parked: int = 0
    retry_in: float | None = None  # seconds until a job retried by this run is due again

    @property
    def total(self) -> int:
        return self.done + self.retried + self.parked


@attrs.frozen
class OutboxWorker:
    """Drains due outbox jobs with the handler registered for each kind."""

    deps: Deps
    handlers: Mapping[str, JobHandler]
    # Short, because a live worker renews it while the job runs; a dead one's jobs are
    # taken over once it lapses.
    lease: timedelta = timedelta(seconds=10)
    batch: int = 20  # jobs claimed (and run concurrently) by one run_once
    max_attempts: int = 25  # with 2**n backoff capped at 1 h: about a day of retries

    async def claim(self, limit: int) -> list[OutboxJob]:
        """Lease up to *limit* due jobs of the kinds this process can run."""
        if not self.handlers or limit <= 0:  # nothing to run here; leave jobs to others
            return []
        now = self.deps.now()
        async with self.deps.uow() as uow:
            jobs = await uow.outbox.claim(now, now + self.lease, limit, kinds=list(self.handlers))
            await uow.commit()
        return jobs

    async def renew(self, job_ids: Sequence[int]) -> None:
        """Extend the leases of the jobs this worker is running."""
        if not job_ids:
            return
        async with self.deps.uow() as uow:
            await uow.outbox.renew(job_ids, self.deps.now() + self.lease)
            await uow.commit()

    async def run_job(self, job: OutboxJob, *, record_done: bool = True) -> RunReport:
        """Run one claimed job and record its outcome (done, retry or parked). With
        *record_done* False a success is left for the caller to record in a batch
        (:meth:`complete`); until then the job stays leased."""
        return await self._run(job, RunReport(), record_done=record_done)

    async def complete(self, job_ids: Sequence[int]) -> None:
        """Record jobs as done, in one transaction and one statement."""
        if not job_ids:
            return
        async with self.deps.uow() as uow:
            await uow.outbox.complete_many(job_ids)
            await uow.commit()

    async def run_once(self) -> RunReport:
        """Claim one batch and run its jobs concurrently."""
        jobs = await self.claim(self.batch)
        reports = await asyncio.gather(*(self.run_job(job) for job in jobs))
        return RunReport(
            sum(r.done for r in reports),
            sum(r.retried for r in reports),
            sum(r.parked for r in reports),
        )

    async def drain(self, max_rounds: int = 100) -> RunReport:
        """Run until nothing is due (or *max_rounds* batches); for tests and the CLI."""
        total = RunReport()
        for _ in range(max_rounds):
            r = await self.run_once()
            total = RunReport(
                total.done + r.done, total.retried + r.retried, total.parked + r.parked
            )
            if r.total == 0:
                break
        return total

    async def _run(
        self, job: OutboxJob, report: RunReport, *, record_done: bool = True
    ) -> RunReport:
        assert job.id is not None
        handler = self.handlers[job.kind]
        try:
            await handler(job)
        except PERMANENT as e:
            log.warning("outbox job %s (%s) parked: %s", job.id, job.kind, e)
            await self._finish(job.id, park=f"{type(e).__name__}: {e}")
            return attrs.evolve(report, parked=report.parked + 1)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            if job.attempts >= self.max_attempts:
                log.error(
                    "outbox job %s (%s) parked after %d attempts: %s",
                    job.id,
                    job.kind,
                    job.attempts,
                    error,
                )
                await self._finish(job.id, park=error)
                return attrs.evolve(report, parked=report.parked + 1)
            delay = (
                timedelta(seconds=e.retry_after)
                if isinstance(e, RetryLaterError)
                else backoff(job.attempts, scale=SIBLING_SCALE)
                if isinstance(e, WaitingForSiblingError)
                else backoff(job.attempts)
            )
            log.info(
                "outbox job %s (%s) failed, retry in %s: %s",
                job.id,
                job.kind,
                delay,
                error,
                exc_info=not isinstance(e, DomainError),
            )
            await self._finish(job.id, retry_at=self.deps.now() + delay, error=error)
            return attrs.evolve(report, retried=report.retried + 1, retry_in=delay.total_seconds())
        if record_done:
            await self._finish(job.id)
        return attrs.evolve(report, done=report.done + 1)

    async def _finish(
        self,
        job_id: int,
        *,
        park: str | None = None,
        retry_at: datetime | None = None,
        error: str = "",
    ) -> None:
        async with self.deps.uow() as uow:
            if park is not None:
                await uow.outbox.park(job_id, park)
            elif retry_at is not None:
                await uow.outbox.retry(job_id, retry_at, error)
            else:
                await uow.outbox.complete(job_id)
            await uow.commit()


@attrs.frozen
class OutboxAdmin:
    """What an operator does with the outbox: look at jobs, retry parked ones."""

    deps: Deps

    async def jobs(self, *, parked_only: bool = False, limit: int = 50) -> list[OutboxJob]:
        async with self.deps.uow() as uow:
            status = JobStatus.PARKED.value if parked_only else None
            return await uow.outbox.listing(status, limit)

    async def retry(self, job_id: int, actor: Actor) -> bool:
        """Make parked job *job_id* due now with fresh attempts; False if it is not
        parked (or does not exist)."""
        now = self.deps.now()
        async with self.deps.uow() as uow:
            if not await uow.outbox.requeue(job_id, now):
                return False
            await record(uow, now, actor, "outbox.retry", f"outbox:{job_id}")
            await uow.commit()
        self.deps.kick()
        return True

    async def retry_all_parked(self, actor: Actor) -> int:
        now = self.deps.now()
        async with self.deps.uow() as uow:
            n = await uow.outbox.requeue_parked(now)
            if n:
                await record(uow, now, actor, "outbox.retry_all", "outbox", jobs=n)
            await uow.commit()
        self.deps.kick()
        return n
