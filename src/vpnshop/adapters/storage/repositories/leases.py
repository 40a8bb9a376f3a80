"""Lease rows of singleton periodic jobs: one conditional UPDATE takes a lease, so two
replicas never both hold one, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import _Repo


class SqlLeases(_Repo):
    async def acquire(
        self, name: str, holder: str, now: datetime, until: datetime, ran_before: datetime
    ) -> bool:
        c = t.scheduler_leases.c
        await self._conn.execute(
            self._insert(t.scheduler_leases)
            .values(name=name)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        row = await self._one(
            sa.update(t.scheduler_leases)
            .where(
                c.name == name,
                sa.or_(c.locked_until.is_(None), c.locked_until <= now),
                sa.or_(c.last_run_at.is_(None), c.last_run_at <= ran_before),
            )
            .values(holder=holder, locked_until=until)
            .returning(c.name)
        )
        return row is not None

    async def renew(self, name: str, holder: str, until: datetime) -> bool:
        c = t.scheduler_leases.c
        row = await self._one(
            sa.update(t.scheduler_leases)
            .where(c.name == name, c.holder == holder)
            .values(locked_until=until)
            .returning(c.name)
        )
        return row is not None

    async def release(self, name: str, holder: str, ran_at: datetime | None) -> None:
        c = t.scheduler_leases.c
        values: dict[str, object] = {"holder": None, "locked_until": None}
        if ran_at is not None:
            values["last_run_at"] = ran_at
        await self._conn.execute(
            sa.update(t.scheduler_leases).where(c.name == name, c.holder == holder).values(**values)
        )
