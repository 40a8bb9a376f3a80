"""The audit log."""

from __future__ import annotations

from datetime import timedelta

import attrs

from tests.contract.storage.builders import (
    T0,
    Factory,
)
from vpnshop.domain.actor import Actor
from vpnshop.domain.audit import AuditEntry


async def test_audit_recent_newest_first_with_subject_filter(uow_factory: Factory) -> None:
    """Audit entries round-trip with ids; recent() is newest first and filters by subject."""
    entries = [
        AuditEntry(
            actor=Actor.admin(1),
            action="ban",
            subject="customer:1",
            at=T0,
            details={"reason": "spam", "days": 3, "flags": ["a", "b"]},
        ),
        AuditEntry(
            actor=Actor.system("renew"),
            action="renew",
            subject="customer:2",
            at=T0 + timedelta(seconds=1),
        ),
        AuditEntry(
            actor=Actor.provider("yookassa"),
            action="refund",
            subject="customer:1",
            at=T0 + timedelta(seconds=2),
            details={"amount": "100.00", "ok": True},
        ),
    ]
    async with uow_factory() as uow:
        for entry in entries:
            await uow.audit.add(entry)
        await uow.commit()
    async with uow_factory() as uow:
        recent = await uow.audit.recent()
        mine = await uow.audit.recent(subject="customer:1")
        one = await uow.audit.recent(limit=1)
    assert [attrs.evolve(e, id=None) for e in recent] == entries[::-1]
    assert all(isinstance(e.id, int) for e in recent)
    assert len({e.id for e in recent}) == 3
    assert [e.action for e in mine] == ["refund", "ban"]
    assert one == recent[:1]
