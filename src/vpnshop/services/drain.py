"""The outbox drain loop every shell runs: jobs claimed as slots free up and run
concurrently (bounded), leases renewed while they run.

A process that commits work wakes its own loop at once (the ``kick`` given to
``vpnshop.bootstrap``, which sets :attr:`DrainLoop.wake`); otherwise the loop polls every
*interval* seconds, which is how it picks up jobs other processes enqueued, retries that
fell due, and jobs whose holder died (their short lease lapsed). Replicas share the work:
each claim is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL.

Under load, work is grouped to spend fewer transactions per job: when jobs are running, a
wake-up waits *coalesce* seconds so that one claim takes every slot freed meanwhile, and
successes are recorded together, a few milliseconds after they happen (a crash in between
only makes those jobs run again, which every handler allows).

Stopping (:meth:`DrainLoop.run`'s *stop* event) stops claiming and lets the jobs in hand
finish; cancelling the task instead abandons them, and their leases lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import attrs

from vpnshop.domain.outbox import OutboxJob
from vpnshop.ports.storage import StorageUnavailableError
from vpnshop.services.outbox import OutboxWorker, RunReport

log = logging.getLogger(__name__)


@attrs.define
class DrainStats:
    """Counters since start, for ``/metrics``."""

    claimed: int = 0
    done: int = 0
    retried: int = 0
    parked: int = 0
    failed_claims: int = 0  # the database was unreachable, or a bug


@attrs.define(eq=False)
class DrainLoop:
    worker: OutboxWorker
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    concurrency: int = 16
    interval: float = 2.0  # seconds between polls when nobody wakes the loop
    coalesce: float = 0.005  # seconds a busy loop gathers wake-ups and successes
    stats: DrainStats = attrs.field(factory=DrainStats)
    _running: dict[int, asyncio.Task[None]] = attrs.field(factory=dict, init=False)
    _more: bool = attrs.field(default=False, init=False)  # the last claim filled every slot
    _done: list[int] = attrs.field(factory=list, init=False)  # succeeded, not yet recorded
    _has_done: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def kick(self) -> None:
        """Look for due jobs now (a commit of this process enqueued some)."""
        self.wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Drain until *stop* is set (then finish the jobs in hand) or cancelled."""
        stop = stop or asyncio.Event()
        if not self.worker.handlers:
            log.info("outbox: no job handlers in this process (no panel configured)")
            await stop.wait()
            return
        watcher = asyncio.create_task(self._wake_on(stop))
        renewer = asyncio.create_task(self._renew_forever())
        recorder = asyncio.create_task(self._record_forever())
        try:
            while not stop.is_set():
                if self._running and self.coalesce:
                    await asyncio.sleep(self.coalesce)  # let more slots free up first
                self.wake.clear()
                free = self.concurrency - len(self._running)
                if free > 0:
                    jobs = await self._claim(free)
                    self._more = len(jobs) == free
                    for job in jobs:
                        self._start(job)
                    if self._more and len(self._running) < self.concurrency:
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.interval)
            if self._running:
                log.info("outbox: stopping, finishing %d job(s) in hand", len(self._running))
                await asyncio.wait(list(self._running.values()))
            await self._record()
        finally:
            tasks = (watcher, renewer, recorder, *self._running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake.set()

    async def _claim(self, limit: int) -> list[OutboxJob]:
        try:
            jobs = await self.worker.claim(limit)
        except StorageUnavailableError as exc:
            self.stats.failed_claims += 1
            log.warning("outbox: database unavailable: %s", exc)
            return []
        except Exception:
            self.stats.failed_claims += 1
            log.exception("outbox: claim failed")
            return []
        self.stats.claimed += len(jobs)
        return jobs

    def _start(self, job: OutboxJob) -> None:
        assert job.id is not None
        if job.id in self._running:  # our lease lapsed (renewal failed) and we took it back
            return
        task = asyncio.create_task(self._run(job), name=f"vpnshop-outbox-{job.id}")
        self._running[job.id] = task

    async def _run(self, job: OutboxJob) -> None:
        assert job.id is not None
        try:
            report = await self.worker.run_job(job, record_done=False)
            if report.done:
                self._done.append(job.id)
                self._has_done.set()
            if report.retry_in is not None and report.retry_in < self.interval:
                # due again before the next poll: look then, not a whole interval later
                asyncio.get_running_loop().call_later(report.retry_in, self.wake.set)
            self._count(report)
        except StorageUnavailableError as exc:  # the outcome was not recorded; lease lapses
            log.warning("outbox: job %s: database unavailable: %s", job.id, exc)
        except Exception:
            log.exception("outbox: job %s: recording its outcome failed", job.id)
        finally:
            self._running.pop(job.id, None)
            if self._more:  # a slot is free and more jobs were due
                self.wake.set()

    def _count(self, report: RunReport) -> None:
        self.stats.done += report.done
        self.stats.retried += report.retried
        self.stats.parked += report.parked

    async def _record_forever(self) -> None:
        while True:
            await self._has_done.wait()
            await asyncio.sleep(self.coalesce)
            await self._record()

    async def _record(self) -> None:
        """Record the successes so far as done, in one transaction."""
        self._has_done.clear()
        done, self._done = self._done, []
        try:
            await self.worker.complete(done)
        except Exception as exc:  # the jobs run again after their lease; all allow it
            log.warning("outbox: recording %d finished job(s) failed: %s", len(done), exc)

    async def _renew_forever(self) -> None:
        period = max(self.worker.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(period)
            if not self._running:
                continue
            try:
                await self.worker.renew(list(self._running))
            except Exception as exc:  # the next round tries again; a lapse only risks a rerun
                log.warning("outbox: renewing leases failed: %s", exc)
