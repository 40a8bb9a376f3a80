"""The audit log."""

from __future__ import annotations

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import _Repo
from vpnshop.domain.actor import Actor
from vpnshop.domain.audit import AuditEntry


class SqlAudit(_Repo):
    async def add(self, entry: AuditEntry) -> None:
        await self._conn.execute(
            sa.insert(t.audit_log).values(
                actor=str(entry.actor),
                action=entry.action,
                subject=entry.subject,
                details=dict(entry.details),
                at=entry.at,
            )
        )

    async def recent(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]:
        stmt = sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        if subject is not None:
            stmt = stmt.where(t.audit_log.c.subject == subject)
        return [
            AuditEntry(
                actor=Actor.parse(r.actor),
                action=r.action,
                subject=r.subject,
                at=r.at,
                details=dict(r.details),
                id=r.id,
            )
            for r in await self._all(stmt)
        ]
