"""Positions of the due-scans (``job_cursors``)."""

from __future__ import annotations

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import _Repo
from vpnshop.ports.storage_jobs import ScanCursor


class SqlCursors(_Repo):
    async def claim(self, name: str, initial: ScanCursor) -> ScanCursor:
        c = t.job_cursors.c
        await self._conn.execute(
            self._insert(t.job_cursors)
            .values(
                name=name,
                expires_at=initial[0],
                subscription_id=initial[1],
                updated_at=sa.func.current_timestamp(),
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
        stmt = sa.select(c.expires_at, c.subscription_id).where(c.name == name)
        if self._pg:
            stmt = stmt.with_for_update()
        row = await self._one(stmt)
        assert row is not None
        return (row.expires_at, row.subscription_id)

    async def move(self, name: str, position: ScanCursor) -> None:
        await self._conn.execute(
            sa.update(t.job_cursors)
            .where(t.job_cursors.c.name == name)
            .values(
                expires_at=position[0],
                subscription_id=position[1],
                updated_at=sa.func.current_timestamp(),
            )
        )
