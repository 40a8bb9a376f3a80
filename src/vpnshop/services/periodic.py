"""Periodic jobs: the registry the scheduler runs.

A :class:`PeriodicJob` is a name, an interval, whether it is a singleton, and an async
callable with no arguments (a closure over the use cases it needs). The scheduler shell
builds one :class:`JobRegistry` per process from job factories (``vpnshop_scheduler.jobs``)
and runs every job in it:

- a **singleton** job runs in one replica at a time: before each run the runner takes the
  job's lease row (``uow.leases``), so replicas on one database take turns and the interval
  holds across them (the row remembers when the job last ran); on SQLite there is one
  process anyway;
- a **non-singleton** job runs in every replica; it must claim its own work with
  ``FOR UPDATE SKIP LOCKED`` (the outbox drain does), so replicas share the work.

Every job must be safe to run again after being killed mid-way: a stop lets the job in
hand finish, but ``kill -9`` does not, and the next run (here or in another replica) must
pick up where it stopped without doing anything twice. The callable's return value is
logged at debug level (a count, a report) and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import timedelta

import attrs

from vpnshop.domain.errors import ValidationError
from vpnshop.ports.storage import StorageUnavailableError
from vpnshop.services.deps import Deps

log = logging.getLogger(__name__)

JobFunc = Callable[[], Awaitable[object]]
JOB_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@attrs.frozen
class PeriodicJob:
    """A job the scheduler runs every *interval* seconds (measured from the end of the
    previous run, so a slow run never overlaps itself)."""

    name: str  # unique; the lease row's key and the metrics label
    interval: float  # seconds
    run: JobFunc
    singleton: bool = True
    # Upper bound of one run, in seconds; a singleton's lease is renewed while it runs,
    # so this only bounds how long a stuck run holds the job. None: no bound.
    timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        if not JOB_NAME.fullmatch(self.name):
            raise ValidationError(f"job name {self.name!r}: use 1-40 of a-z, 0-9 and _")
        if not self.interval > 0:
            raise ValidationError(f"job {self.name}: interval must be positive")


class JobRegistry:
    """The periodic jobs of one process, by name, in the order they were added."""

    def __init__(self, jobs: Iterable[PeriodicJob] = ()) -> None:
        self._jobs: dict[str, PeriodicJob] = {}
        for job in jobs:
            self.add(job)

    def add(self, job: PeriodicJob) -> None:
        """Add *job*; a second job of the same name is a bug (ValidationError)."""
        if job.name in self._jobs:
            raise ValidationError(f"job {job.name} is registered twice")
        self._jobs[job.name] = job

    def get(self, name: str) -> PeriodicJob | None:
        return self._jobs.get(name)

    def names(self) -> list[str]:
        return list(self._jobs)

    def __iter__(self) -> Iterator[PeriodicJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)


@attrs.define
class JobStats:
    """What ``/metrics`` says about one job in this process."""

    runs: int = 0
    failures: int = 0
    skipped: int = 0  # another replica held the lease, or the interval had not passed
    running: bool = False
    last_seconds: float = 0.0  # how long the last run took
    last_success: float = 0.0  # unix time of the last run that did not fail


@attrs.define(eq=False)
class PeriodicRunner:
    """Runs every job of a registry at its interval until stopped.

    Stopping lets each job in hand finish; a singleton's lease (a row per job, renewed
    while the job runs) keeps other replicas off it meanwhile, and lapses within *lease*
    seconds if this process dies.
    """

    deps: Deps
    registry: JobRegistry
    holder: str  # who holds leases: host, pid and a random part
    lease: float = 30.0
    stats: dict[str, JobStats] = attrs.field(factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        loops = [asyncio.create_task(self._loop(job, stop)) for job in self.registry]
        try:
            await asyncio.gather(*loops, stop.wait())
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _loop(self, job: PeriodicJob, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick(job)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=job.interval)

    async def tick(self, job: PeriodicJob) -> bool:
        """Run *job* once if it is this process's turn; True if it ran (even if it
        failed). Tests call this with a clock they move."""
        stats = self.stats.setdefault(job.name, JobStats())
        if job.singleton:
            try:
                taken = await self._acquire(job)
            except StorageUnavailableError as exc:
                log.warning("scheduler: %s: database unavailable: %s", job.name, exc)
                return False
            if not taken:
                stats.skipped += 1
                return False
        ok = False
        started = time.monotonic()
        stats.running = True
        renewer = asyncio.create_task(self._renew(job)) if job.singleton else None
        try:
            async with asyncio.timeout(job.timeout):
                result = await job.run()
            ok = True
            log.debug("scheduler: %s done: %s", job.name, result)
        except StorageUnavailableError as exc:
            log.warning("scheduler: %s: database unavailable: %s", job.name, exc)
        except TimeoutError:
            log.error("scheduler: %s took longer than %ss; stopped", job.name, job.timeout)
        except Exception:
            log.exception("scheduler: %s failed", job.name)
        finally:
            stats.running = False
            stats.runs += 1
            stats.last_seconds = time.monotonic() - started
            if renewer is not None:
                renewer.cancel()
                await asyncio.gather(renewer, return_exceptions=True)
                await self._release(job)
        if ok:
            stats.last_success = time.time()
        else:
            stats.failures += 1
        return True

    async def _acquire(self, job: PeriodicJob) -> bool:
        now = self.deps.now()
        # A little slack, so that a replica waking a hair early is not put off a whole
        # interval by its own last run.
        ran_before = now - timedelta(seconds=job.interval * 0.9)
        async with self.deps.uow() as uow:
            taken = await uow.leases.acquire(
                job.name, self.holder, now, now + timedelta(seconds=self.lease), ran_before
            )
            await uow.commit()
        return taken

    async def _renew(self, job: PeriodicJob) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                async with self.deps.uow() as uow:
                    until = self.deps.now() + timedelta(seconds=self.lease)
                    kept = await uow.leases.renew(job.name, self.holder, until)
                    await uow.commit()
            except Exception as exc:  # the next round tries again
                log.warning("scheduler: %s: renewing the lease failed: %s", job.name, exc)
                continue
            if not kept:
                log.warning("scheduler: %s: lease lost to another replica", job.name)

    async def _release(self, job: PeriodicJob) -> None:
        try:
            async with self.deps.uow() as uow:
                await uow.leases.release(job.name, self.holder, self.deps.now())
                await uow.commit()
        except Exception as exc:  # the lease lapses by itself
            log.warning("scheduler: %s: releasing the lease failed: %s", job.name, exc)
