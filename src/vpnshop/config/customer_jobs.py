"""Settings of the customer jobs the scheduler runs: expiry reminders, auto-renewal and
broadcasts."""

from __future__ import annotations

import re

import attrs

from vpnshop.config.reader import Reader, boolean, integer, seconds, words

_OFFSET = re.compile(r"([+-]?\d+)([dh]?)")


def offsets(value: str) -> tuple[int, ...]:
    """``3d,1d,0,-1d`` (or hours: ``12h``) -> seconds before expiry, largest first;
    negative ones are after expiry."""
    found: set[int] = set()
    for item in words(value):
        m = _OFFSET.fullmatch(item.lower())
        if m is None:
            raise ValueError(f"expected offsets like 3d,1d,0,-1d or 12h, got {item!r}")
        n, unit = int(m.group(1)), m.group(2) or "d"
        if abs(n) > (365 if unit == "d" else 365 * 24):
            raise ValueError(f"offset {item!r} is more than a year")
        found.add(n * (86400 if unit == "d" else 3600))
    if not found:
        raise ValueError("give at least one offset, or switch reminders off")
    return tuple(sorted(found, reverse=True))


@attrs.frozen
class CustomerJobSettings:
    # Reminders: offsets in seconds before expiry (negative: after), and how many
    # subscriptions one run of a due-scan handles at most.
    reminders_enabled: bool = True
    reminder_offsets: tuple[int, ...] = (3 * 86400, 86400, 0, -86400)
    # A scheduler that was down does not send reminders older than this on its return.
    reminder_max_lateness: float = 6 * 3600.0
    scan_batch: int = 1000
    # Auto-renewal from the balance (and by a saved payment method) this many days
    # before expiry.
    auto_renew_days_before: int = 1
    # Broadcasts: messages per second (Telegram allows about 30 to different chats).
    broadcast_rate: float = 25.0


def read_customer_jobs(r: Reader) -> CustomerJobSettings:
    return CustomerJobSettings(
        reminders_enabled=r.get("REMINDERS", boolean, True),
        reminder_offsets=r.get("REMINDER_OFFSETS", offsets, (3 * 86400, 86400, 0, -86400)),
        reminder_max_lateness=r.get("REMINDER_MAX_LATENESS", seconds(60, 30 * 86400), 21600.0),
        scan_batch=r.get("SCAN_BATCH", integer(10, 100_000), 1000),
        auto_renew_days_before=r.get("AUTO_RENEW_DAYS_BEFORE", integer(0, 30), 1),
        broadcast_rate=r.get("BROADCAST_RATE", seconds(0.1, 1000), 25.0),
    )
