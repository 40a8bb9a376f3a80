"""Scheduler settings: intervals by job name, outbox bounds, every problem named."""

from __future__ import annotations

import pytest

from vpnshop.config import ConfigError, parse_settings


def test_intervals_override_defaults_by_job_name() -> None:
    """An interval given by name wins; others keep their default; unknown jobs get theirs."""
    s = parse_settings({"VPNSHOP_SCHEDULER_INTERVALS": "outbox=0.5, panel_drift=600"}).scheduler
    assert s.interval("outbox") == 0.5
    assert s.interval("panel_drift") == 600
    assert s.interval("recheck") == 60
    assert s.interval("reminders", 300) == 300


def test_scheduler_defaults() -> None:
    """Without settings the scheduler listens on 9090 and runs 16 outbox jobs at once."""
    s = parse_settings({}).scheduler
    assert (s.port, s.outbox_concurrency, s.outbox_lease, s.outbox_max_attempts) == (
        9090,
        16,
        10.0,
        25,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VPNSHOP_SCHEDULER_INTERVALS", "outbox"),
        ("VPNSHOP_SCHEDULER_INTERVALS", "outbox=fast"),
        ("VPNSHOP_SCHEDULER_INTERVALS", "outbox=0"),
        ("VPNSHOP_OUTBOX_CONCURRENCY", "0"),
        ("VPNSHOP_OUTBOX_LEASE", "0.1"),
        ("VPNSHOP_SCHEDULER_PORT", "70000"),
    ],
)
def test_bad_scheduler_values_are_refused_by_name(variable: str, value: str) -> None:
    """A bad scheduler value is one problem naming its variable."""
    with pytest.raises(ConfigError) as refused:
        parse_settings({variable: value})
    assert [name for name, _ in refused.value.problems] == [variable]
