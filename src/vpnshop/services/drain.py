"""The outbox drain loop every shell runs: jobs claimed as slots free up and run
concurrently (bounded), leases renewed while they run.

A process that commits work wakes its own loop at once (the ``kick`` given to
``vpnshop.bootstrap``, which sets :attr:`DrainLoop.wake`); otherwise the loop polls every
*interval* seconds, which is how it picks up jobs other processes enqueued, retries that
fell due, and jobs whose holder died (their short lease lapsed). Replicas share the work:
each claim is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL.

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
    stats: DrainStats = attrs.field(factory=DrainStats)
    _running: dict[int, asyncio.Task[None]] = attrs.field(factory=dict, init=False)
    _more: bool = attrs.field(default=False, init=False)  # the last claim filled every slot

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
        try:
            while not stop.is_set():
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
        finally:
            for task in (watcher, renewer, *self._running.values()):
                task.cancel()
            await asyncio.gather(watcher, renewer, *self._running.values(), return_exceptions=True)

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
            report = await self.worker.run_job(job)
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
