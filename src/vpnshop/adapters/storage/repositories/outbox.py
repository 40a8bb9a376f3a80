"""The outbox: jobs added idempotently, claimed under a lease, completed, retried or
parked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo
from vpnshop.domain.outbox import JobStatus, OutboxJob


def _job(r: Row) -> OutboxJob:
    return OutboxJob(
        id=r.id,
        kind=r.kind,
        payload=dict(r.payload),
        dedupe_key=r.dedupe_key,
        due_at=r.due_at,
        status=JobStatus(r.status),
        attempts=r.attempts,
        last_error=r.last_error,
        created_at=r.created_at,
        locked_until=r.locked_until,
    )


def _values(job: OutboxJob) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "payload": dict(job.payload),
        "dedupe_key": job.dedupe_key,
        "status": job.status.value,
        "attempts": job.attempts,
        "due_at": job.due_at,
        "last_error": job.last_error,
        "created_at": job.created_at or job.due_at,
    }


class SqlOutbox(_Repo):
    async def add(self, job: OutboxJob) -> bool:
        row = await self._one(
            self._insert(t.outbox)
            .values(**_values(job))
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(t.outbox.c.id)
        )
        return row is not None

    async def add_many(self, jobs: Sequence[OutboxJob]) -> int:
        # One multi-row INSERT: a due-scan page of 1,000 jobs is one round trip, not 1,000
        # (the per-statement cost was most of the scan). 1,000 rows x 8 columns stays
        # under asyncpg's and SQLite's bound-parameter limits.
        first: dict[str, OutboxJob] = {}
        for job in jobs:  # a key twice in one statement: the first one counts, as with add
            first.setdefault(job.dedupe_key, job)
        unique = list(first.values())
        if not unique:
            return 0
        rows = await self._all(
            self._insert(t.outbox)
            .values([_values(j) for j in unique])
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(t.outbox.c.id)
        )
        return len(rows)

    async def claim(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int = 10,
        kinds: Sequence[str] | None = None,
    ) -> list[OutboxJob]:
        o = t.outbox.c
        due = (
            sa.select(o.id)
            .where(
                o.status == JobStatus.PENDING.value,
                o.due_at <= now,
                sa.or_(o.locked_until.is_(None), o.locked_until <= now),
            )
            .order_by(o.due_at, o.id)
            .limit(limit)
        )
        if kinds:
            due = due.where(o.kind.in_(list(kinds)))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            sa.update(t.outbox)
            .where(o.id.in_(due.scalar_subquery()))
            .values(locked_until=lease_until, attempts=o.attempts + 1)
            .returning(t.outbox)
        )
        rows = await self._all(stmt)
        return sorted((_job(r) for r in rows), key=lambda j: (j.due_at, j.id or 0))

    async def complete(self, job_id: int) -> None:
        await self._set(job_id, status=JobStatus.DONE.value, locked_until=None)

    async def complete_many(self, job_ids: Sequence[int]) -> None:
        if job_ids:
            await self._conn.execute(
                sa.update(t.outbox)
                .where(t.outbox.c.id.in_(list(job_ids)))
                .values(status=JobStatus.DONE.value, locked_until=None)
            )

    async def retry(self, job_id: int, due_at: datetime, error: str) -> None:
        await self._set(job_id, due_at=due_at, last_error=error[:2000], locked_until=None)

    async def park(self, job_id: int, error: str) -> None:
        await self._set(
            job_id, status=JobStatus.PARKED.value, last_error=error[:2000], locked_until=None
        )

    async def _set(self, job_id: int, **values: Any) -> None:
        await self._conn.execute(
            sa.update(t.outbox).where(t.outbox.c.id == job_id).values(**values)
        )

    async def get(self, job_id: int) -> OutboxJob | None:
        row = await self._one(sa.select(t.outbox).where(t.outbox.c.id == job_id))
        return _job(row) if row else None

    async def pending_count(self) -> int:
        stmt = sa.select(sa.func.count()).where(t.outbox.c.status == JobStatus.PENDING.value)
        return int((await self._conn.execute(stmt)).scalar_one())

    async def parked(self, limit: int = 50) -> list[OutboxJob]:
        stmt = (
            sa.select(t.outbox)
            .where(t.outbox.c.status == JobStatus.PARKED.value)
            .order_by(t.outbox.c.id.desc())
            .limit(limit)
        )
        return [_job(r) for r in await self._all(stmt)]

    async def renew(self, job_ids: Sequence[int], lease_until: datetime) -> None:
        if not job_ids:
            return
        o = t.outbox.c
        await self._conn.execute(
            sa.update(t.outbox)
            .where(o.id.in_(list(job_ids)), o.status == JobStatus.PENDING.value)
            .values(locked_until=lease_until)
        )

    async def listing(
        self, status: str | None = None, limit: int = 50, kind: str | None = None
    ) -> list[OutboxJob]:
        stmt = sa.select(t.outbox).order_by(t.outbox.c.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(t.outbox.c.status == status)
        if kind is not None:
            stmt = stmt.where(t.outbox.c.kind == kind)
        return [_job(r) for r in await self._all(stmt)]

    async def requeue(self, job_id: int, now: datetime) -> bool:
        o = t.outbox.c
        row = await self._one(
            sa.update(t.outbox)
            .where(o.id == job_id, o.status == JobStatus.PARKED.value)
            .values(status=JobStatus.PENDING.value, due_at=now, attempts=0, locked_until=None)
            .returning(o.id)
        )
        return row is not None

    async def requeue_parked(self, now: datetime) -> int:
        o = t.outbox.c
        rows = await self._all(
            sa.update(t.outbox)
            .where(o.status == JobStatus.PARKED.value)
            .values(status=JobStatus.PENDING.value, due_at=now, attempts=0, locked_until=None)
            .returning(o.id)
        )
        return len(rows)
