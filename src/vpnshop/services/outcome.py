"""What applying an authenticated provider event came to; the webhook shell answers by it."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    DUPLICATE = "duplicate"  # authentic, already applied: answer 2xx, change nothing
    IGNORED = "ignored"  # authentic, nothing to do
    UNKNOWN = "unknown"  # no such payment of ours
    CANCELED = "canceled"
    RETURNED = "returned"  # authentic, but no payment of ours holds it: given back
