"""Broadcasts: one text to a segment of the customers, one row per recipient, sent at a
configured rate through the Notifier port.

Recipients are marked IN_FLIGHT and committed before their messages go out, half a
second's sends at a time; the commit that records the previous batch's outcomes and
claims the next batch runs while the current one is sent: sends never wait for the disk.
After a kill -9 the messages whose fate is unknown are those of at most two batches (one
second of sends at the configured rate): they are recorded as failed ("interrupted") and
never sent again. A 429 waits exactly ``retry_after`` and sends the same message; a 403
marks the customer unreachable. Progress (sent, failed, pending) is counted from the rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.broadcast import (
    Broadcast,
    BroadcastProgress,
    BroadcastStatus,
    Recipient,
    RecipientStatus,
    Segment,
)
from vpnshop.domain.errors import NotFoundError, ValidationError
from vpnshop.ports.notifier import (
    Message,
    MessageRejectedError,
    Notifier,
    RecipientUnreachableError,
    RetryLaterError,
)
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps, record

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # Telegram's limit for one message
Outcome = tuple[Recipient, RecipientStatus, str | None]
CATCH_UP = 1.0  # seconds a late sender may catch up on its schedule


@attrs.frozen
class CreateBroadcast:
    """Create a broadcast to *segment*: the broadcast and one row per recipient, in one
    transaction. Sending starts at the scheduler's next run."""

    deps: Deps

    async def __call__(self, segment: Segment, text: str, *, actor: Actor) -> BroadcastProgress:
        if not text.strip():
            raise ValidationError("the broadcast text is empty")
        if len(text) > MAX_TEXT:
            raise ValidationError(f"the broadcast text is {len(text)} characters; at most 4096")
        now = self.deps.now()
        async with self.deps.uow() as uow:
            b = await uow.broadcasts.add(
                Broadcast(
                    id=None,
                    segment=segment,
                    text=text,
                    status=BroadcastStatus.RUNNING,
                    created_at=now,
                )
            )
            assert b.id is not None
            count = await uow.broadcasts.add_recipients(b.id, segment, now)
            if count == 0:
                await uow.broadcasts.set_status(b.id, b.status, BroadcastStatus.DONE, now)
            await record(
                uow, now, actor, "broadcast.create", f"broadcast:{b.id}", segment=segment.value
            )
            progress = await uow.broadcasts.progress(b.id)
            await uow.commit()
        assert progress is not None
        return progress


@attrs.frozen
class BroadcastStatusQuery:
    """A broadcast's progress; raises NotFoundError for an unknown id."""

    deps: Deps

    async def __call__(self, broadcast_id: int) -> BroadcastProgress:
        async with self.deps.uow() as uow:
            progress = await uow.broadcasts.progress(broadcast_id)
        if progress is None:
            raise NotFoundError(f"broadcast {broadcast_id} does not exist")
        return progress

    async def recent(self, limit: int = 20) -> list[BroadcastProgress]:
        """The newest broadcasts with their progress (what /metrics shows)."""
        async with self.deps.uow() as uow:
            return await uow.broadcasts.recent(limit)


@attrs.frozen
class CancelBroadcast:
    """Stop a running broadcast: recipients not yet sent to are skipped. False when it had
    finished or was cancelled already."""

    deps: Deps

    async def __call__(self, broadcast_id: int, *, actor: Actor) -> bool:
        now = self.deps.now()
        async with self.deps.uow() as uow:
            if await uow.broadcasts.get(broadcast_id) is None:
                raise NotFoundError(f"broadcast {broadcast_id} does not exist")
            if not await uow.broadcasts.set_status(
                broadcast_id, BroadcastStatus.RUNNING, BroadcastStatus.CANCELLED, now
            ):
                return False
            skipped = await uow.broadcasts.skip_pending(broadcast_id, now)
            await record(
                uow, now, actor, "broadcast.cancel", f"broadcast:{broadcast_id}", skipped=skipped
            )
            await uow.commit()
        return True


@attrs.frozen
class SendBroadcasts:
    """The scheduler's broadcast job: send the running broadcasts at *rate* messages per
    second, for at most *run_for* seconds per run (the next run carries on)."""

    deps: Deps
    notifier: Notifier
    rate: float = 25.0
    run_for: float | None = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic
    unavailable_retries: int = 5
    batch_seconds: float = 0.5

    async def __call__(self) -> int:
        async with self.deps.uow() as uow:
            running = await uow.broadcasts.running()
        deadline = None if self.run_for is None else self.monotonic() + self.run_for
        sent = 0
        for b in running:
            assert b.id is not None
            sent += await self.send(b.id, deadline)
        return sent

    async def send(
        self, broadcast_id: int, deadline: float | None = None, *, limit: int | None = None
    ) -> int:
        """Send broadcast *broadcast_id* until it is done, cancelled, *deadline* passes or
        *limit* recipients were tried; returns the messages sent.

        Recipients are claimed IN_FLIGHT a batch at a time (``batch_size``), and the
        commit that records the previous batch's outcomes and claims the next batch runs
        while the current one is sent: the sends never wait for the disk. At most two batches are
        in flight, and after a kill -9 those are recorded as interrupted, never resent.

        One sender per broadcast at a time: the scheduler runs this as a singleton job
        under its lease. A second sender starting while one is at work would record the
        first one's batches in flight as interrupted (nobody would get the message twice,
        but some would not get it)."""
        async with self.deps.uow() as uow:
            b = await uow.broadcasts.get(broadcast_id)
            if b is None or b.status is not BroadcastStatus.RUNNING:
                return 0
            # Left in flight by a sender that died: never sent again.
            if await uow.broadcasts.settle_in_flight(broadcast_id, self.deps.now()):
                await uow.commit()
        message = Message(text=b.text)
        interval = 1.0 / self.rate
        next_at = self.monotonic()
        sent = claimed = 0
        done: list[Outcome] = []
        batch, exhausted = await self._step(broadcast_id, [], 0, self._want(deadline, limit, 0))
        while batch:
            claimed += len(batch)
            after = batch[-1].customer_id
            want = self._want(deadline, limit, claimed)
            step = asyncio.ensure_future(self._step(broadcast_id, done, after, want))
            done = []
            try:
                for r in batch:
                    wait = next_at - self.monotonic()
                    if wait > 0:
                        await self.sleep(wait)
                    done.append(await self._deliver(r, message))
                    sent += done[-1][1] is RecipientStatus.SENT
                    # A fixed schedule: a late send is caught up, so the rate holds on
                    # average; after a long stall (a 429) it restarts rather than bursts.
                    next_at = max(next_at + interval, self.monotonic() - CATCH_UP)
            except BaseException:
                # Stopped mid-batch (cancelled): record what went out and put back what
                # was never handed to Telegram; only the message being sent stays in
                # flight (interrupted).
                claimed_next, _ = await step
                unsent = batch[len(done) + 1 :] + claimed_next
                back: list[Outcome] = [(r, RecipientStatus.PENDING, None) for r in unsent]
                await asyncio.shield(self._step(broadcast_id, done + back, 0, 0))
                raise
            batch, exhausted = await step
        await self._step(broadcast_id, done, 0, 0, finish=exhausted)
        return sent

    @property
    def batch_size(self) -> int:
        """Recipients claimed per commit: half a second of sends, so the two batches that
        can be in flight are at most one second's worth (at least one each)."""
        return max(1, int(self.rate * self.batch_seconds))

    def _want(self, deadline: float | None, limit: int | None, claimed: int) -> int:
        if deadline is not None and self.monotonic() >= deadline:
            return 0
        return self.batch_size if limit is None else max(0, min(self.batch_size, limit - claimed))

    async def _step(
        self,
        broadcast_id: int,
        done: list[Outcome],
        after: int,
        want: int,
        *,
        finish: bool = False,
    ) -> tuple[list[Recipient], bool]:
        """One commit: record *done*, claim up to *want* recipients. Returns them, and
        whether the broadcast had none left to claim; *finish* marks it DONE (only once
        every outcome of this sender is recorded)."""
        now = self.deps.now()
        async with self.deps.uow() as uow:
            await self._record(uow, broadcast_id, done)
            batch: list[Recipient] = []
            exhausted = False
            b = await uow.broadcasts.get(broadcast_id)
            running = b is not None and b.status is BroadcastStatus.RUNNING
            if want and running:
                batch = await uow.broadcasts.claim_recipients(broadcast_id, now, after, want)
                if not batch and after:  # one more look from the start: rows put back
                    batch = await uow.broadcasts.claim_recipients(broadcast_id, now, 0, want)
                exhausted = not batch
            if finish and running:
                await uow.broadcasts.set_status(
                    broadcast_id, BroadcastStatus.RUNNING, BroadcastStatus.DONE, now
                )
                log.info("broadcast %s done", broadcast_id)
            await uow.commit()
        return batch, exhausted

    async def _deliver(self, r: Recipient, message: Message) -> Outcome:
        failures = 0
        while True:
            try:
                await self.notifier.send(r.telegram_id, message)
                return (r, RecipientStatus.SENT, None)
            except RetryLaterError as e:
                await self.sleep(e.retry_after)  # exactly what Telegram asked
            except RecipientUnreachableError:
                return (r, RecipientStatus.FAILED, "unreachable")
            except MessageRejectedError as e:
                return (r, RecipientStatus.FAILED, f"rejected: {e}")
            except Exception as e:  # Telegram down or unreachable: back off, then give up
                failures += 1
                if failures > self.unavailable_retries:
                    return (r, RecipientStatus.FAILED, f"{type(e).__name__}: {e}")
                await self.sleep(min(2.0**failures, 60.0))

    async def _record(self, uow: UnitOfWork, broadcast_id: int, done: list[Outcome]) -> None:
        now = self.deps.now()
        rows = [(r.customer_id, status, error) for r, status, error in done]
        await uow.broadcasts.finish_many(broadcast_id, rows, now)
        for r, _, error in done:
            if error == "unreachable" and await uow.customers.set_unreachable(r.customer_id, True):
                await record(
                    uow,
                    now,
                    Actor.system("telegram"),
                    "customer.unreachable",
                    f"customer:{r.customer_id}",
                )
