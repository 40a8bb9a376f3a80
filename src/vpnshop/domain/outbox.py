"""The outbox: side effects (panel calls, messages) recorded in the same transaction as
the change that causes them, and carried out after commit, with retries."""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    PARKED = "parked"  # failed permanently; an admin looks at it


class JobKind(enum.StrEnum):
    APPLY_SUBSCRIPTION = "apply_subscription"  # make the panel user match a subscription
    NOTIFY_CUSTOMER = "notify_customer"
    NOTIFY_ADMINS = "notify_admins"


@attrs.frozen(hash=False)
class OutboxJob:
    """A side effect to carry out. ``dedupe_key`` makes enqueueing idempotent."""

    kind: str
    payload: Mapping[str, object]
    dedupe_key: str
    due_at: datetime
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    id: int | None = None
    created_at: datetime | None = None
    locked_until: datetime | None = None


def backoff(
    attempts: int, base: float = 2.0, cap: float = 3600.0, jitter: float = 0.2, scale: float = 1.0
) -> timedelta:
    """Delay before retry number *attempts* (1-based): exponential, capped, jittered.

    The jitter spreads retries from many jobs that failed together (a panel outage).
    *scale* shrinks the first steps (the cap stays) for jobs that wait for a sibling.
    """
    delay = min(cap, scale * base ** max(attempts, 1))
    spread = delay * jitter
    return timedelta(seconds=delay + random.uniform(-spread, spread))
