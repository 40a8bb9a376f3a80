"""Expiry reminders: each subscription is told at each configured offset from its expiry,
once per (subscription, offset, expiry); at expiry its panel user is brought up to date.

A due-scan per offset walks the subscriptions in (expires_at, id) order from a cursor
stored in the database (``job_cursors``), so one run reads only the subscriptions that
became due since the last one: an index range scan whose cost follows the due work, not
the size of the table. The outbox dedupe key carries the expiry, so an extension re-arms
every reminder, and two replicas (or a run repeated after a kill -9) enqueue each reminder
once: the cursor row is locked by the scan's transaction and the key is unique. A
reminder that falls due within an hour of the subscription's creation is skipped (a 3-day
trial is not told "3 days left" as it starts), and so are those an auto-renewing
subscription would get just before its renewal's own message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from vpnshop.domain.outbox import JobKind, OutboxJob
from vpnshop.domain.settlement import APPLY, Ref
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage_jobs import DueSubscription, ScanCursor
from vpnshop.services.deps import Deps, outbox_job

DAY = 86400
# A reminder due this close after the subscription was created is not sent: a 3-day
# trial would otherwise be told "3 days left" the moment it starts.
FRESH = timedelta(hours=1)


def reminder_template(offset: int, is_trial: bool) -> str:
    """The NOTIFY_CUSTOMER template of a reminder *offset* seconds before expiry."""
    if offset > 0:
        return "trial_ending" if is_trial else "subscription_expiring"
    if offset == 0:
        return "subscription_expired"
    return "subscription_expired_reminder"


def reminder_key(subscription_id: int, offset: int, expires_at: datetime) -> str:
    return f"remind:{subscription_id}:{offset}:{int(expires_at.timestamp())}"


def _params(due: DueSubscription, offset: int) -> dict[str, object]:
    sub = due.subscription
    params: dict[str, object] = {
        "subscription_id": sub.id,
        "expires_at": sub.expires_at.isoformat(),
        "trial": sub.is_trial,
    }
    if offset > 0:
        params["days_left"] = offset // DAY
        params["hours_left"] = offset // 3600
    elif offset < 0:
        params["days_ago"] = -offset // DAY
    return params


@attrs.frozen
class SendReminders:
    """One run of the reminder scans; returns how many reminders it enqueued."""

    deps: Deps
    offsets: tuple[int, ...] = (3 * DAY, DAY, 0, -DAY)  # seconds before expiry
    notify: bool = True  # False: only the at-expiry panel update
    # Auto-renewal's lead: an auto-renewing paid subscription hears from its renewal then
    # ("renewed", or "too little balance"), so reminders within it are not sent. None: all.
    renews_before: timedelta | None = None
    max_lateness: timedelta = timedelta(hours=6)
    batch: int = 1000

    async def __call__(self) -> int:
        total = 0
        # The at-expiry scan always runs: it brings the panel user up to date.
        for offset in sorted({*self.offsets, 0}, reverse=True):
            total += await self.scan(offset)
        return total

    async def scan(self, offset: int) -> int:
        """Every subscription that reached *offset* before its expiry since the last run."""
        name = f"remind:{offset}"
        enqueued = 0
        while True:
            now = self.deps.now()
            until = now + timedelta(seconds=offset)
            # A scheduler back from a long outage does not send stale reminders.
            floor: ScanCursor = (until - self.max_lateness, 0)
            async with self.deps.uow() as uow:
                cursor = max(await uow.cursors.claim(name, floor), floor)
                found = await uow.subscriptions.due(cursor, until, limit=self.batch)
                # The page's jobs go in as one statement; the dedupe keys keep it exactly
                # once per (subscription, offset, expiry).
                if offset == 0:
                    await uow.outbox.add_many([_apply(due, now) for due in found])
                reminders = [self._reminder(due, offset, now) for due in found]
                enqueued += await uow.outbox.add_many([r for r in reminders if r is not None])
                if found:
                    last = found[-1].subscription
                    assert last.id is not None
                    await uow.cursors.move(name, (last.expires_at, last.id))
                await uow.commit()
            if found:
                self.deps.kick()
            if len(found) < self.batch:
                return enqueued

    def _reminder(self, due: DueSubscription, offset: int, now: datetime) -> OutboxJob | None:
        """The reminder job of one due subscription; None when the customer is not told."""
        sub = due.subscription
        assert sub.id is not None
        if not (self.notify and offset in self.offsets and due.reachable and sub.enabled):
            return None
        if offset > 0 and (_new_then(sub, offset) or self._renewal_tells(sub, offset)):
            return None
        return outbox_job(
            now,
            JobKind.NOTIFY_CUSTOMER,
            reminder_key(sub.id, offset, sub.expires_at),
            customer_id=sub.customer_id,
            template=reminder_template(offset, sub.is_trial),
            **_params(due, offset),
        )

    def _renewal_tells(self, sub: Subscription, offset: int) -> bool:
        """Whether the renewal job speaks for this reminder: the subscription renews
        itself (paid, with a plan, auto-renewal on) no later than *offset* before expiry."""
        lead = self.renews_before
        if lead is None or not sub.auto_renew or sub.is_trial or sub.plan_code is None:
            return False
        return timedelta(seconds=offset) <= lead


def _new_then(sub: Subscription, offset: int) -> bool:
    """Whether the reminder *offset* before expiry falls within FRESH of the subscription's
    creation (it was created with at most that long to run). A store that does not know
    when a row was created (created_at not before its expiry) sends every reminder."""
    created = sub.created_at
    if created is None or created >= sub.expires_at:
        return False
    return sub.expires_at - timedelta(seconds=offset) <= created + FRESH


def _apply(due: DueSubscription, now: datetime) -> OutboxJob:
    """At expiry: bring the subscription's panel user up to date."""
    sub = due.subscription
    reason = f"expired:{int(sub.expires_at.timestamp())}"
    return APPLY.job({Ref.SUBSCRIPTION: sub.id, Ref.REASON: reason}, now)
