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

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator

import attrs

from vpnshop.domain.errors import ValidationError

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
