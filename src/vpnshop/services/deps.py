"""What every use case needs: a way to open units of work, the time, and fresh ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.audit import AuditEntry
from vpnshop.domain.outbox import OutboxJob
from vpnshop.ports.clock import Clock, IdGenerator
from vpnshop.ports.storage import ReadRunner, UnitOfWork, UnitOfWorkFactory

T = TypeVar("T")


def no_kick() -> None:
    """The default kick: nobody in this process waits for outbox jobs."""
    return None


@attrs.frozen
class Deps:
    """Shared dependencies of the use cases, built once by ``vpnshop.bootstrap``.

    ``kick`` is called after a commit that enqueued outbox jobs, so that the outbox worker
    of this process starts on them at once instead of at its next poll.
    """

    uow: UnitOfWorkFactory
    clock: Clock
    ids: IdGenerator
    kick: Callable[[], None] = no_kick
    # Units of work for reads only, which need not queue behind writers (SQLite's one
    # writer connection); None: reads use ``uow`` too. Nothing may be written in one.
    read: UnitOfWorkFactory | None = None
    # Where ``run_read`` runs a whole read at once (SQLite: one hop to a thread); None:
    # in a ``reader()`` unit of work on this loop.
    read_runner: ReadRunner | None = None

    def now(self) -> datetime:
        return self.clock.now()

    def reader(self) -> UnitOfWork:
        """A unit of work for reading only (see ``read``)."""
        return (self.read or self.uow)()

    async def run_read(self, fn: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """``fn(uow)`` in one read-only unit of work; *fn* may use nothing but *uow* (it
        may run on the store's reader thread). The hot screens read this way."""
        if self.read_runner is not None:
            return await self.read_runner(fn)
        async with self.reader() as uow:
            return await fn(uow)


async def record(
    uow: UnitOfWork,
    now: datetime,
    actor: Actor,
    action: str,
    subject: str,
    **details: Any,
) -> None:
    """Append an audit entry in the caller's transaction."""
    await uow.audit.add(
        AuditEntry(actor=actor, action=action, subject=subject, at=now, details=details)
    )


def outbox_job(now: datetime, kind: str, dedupe_key: str, **payload: Any) -> OutboxJob:
    """A job due now; *dedupe_key* makes enqueueing it idempotent."""
    return OutboxJob(kind=kind, payload=payload, dedupe_key=dedupe_key, due_at=now, created_at=now)


async def enqueue(
    uow: UnitOfWork, now: datetime, kind: str, dedupe_key: str, **payload: Any
) -> bool:
    """Add an outbox job in the caller's transaction (idempotent on *dedupe_key*)."""
    return await uow.outbox.add(outbox_job(now, kind, dedupe_key, **payload))
