"""The panel client's backoff: exponential with jitter, capped, stretched to Retry-After,
counted across the first attempt (sent outside tenacity) and the retries."""

from __future__ import annotations

from types import SimpleNamespace

from vpnshop.adapters.remnawave.client import _Wait
from vpnshop.adapters.remnawave.errors import PanelRateLimitedError


def _state(attempt: int, exc: BaseException | None) -> SimpleNamespace:
    outcome = SimpleNamespace(exception=lambda: exc)
    return SimpleNamespace(attempt_number=attempt, outcome=outcome)


def test_the_delay_doubles_per_attempt_within_the_jitter_and_the_cap() -> None:
    """Attempt n waits initial * 2**(n-1) plus up to initial of jitter, never above the cap."""
    wait = _Wait(0.1, 1.0)
    for n, low in ((1, 0.1), (2, 0.2), (3, 0.4)):
        delay = wait.after(n, None)
        assert low <= delay <= low + 0.1
    assert wait.after(30, None) == 1.0


def test_a_rate_limit_waits_its_retry_after_up_to_the_cap() -> None:
    """A 429's Retry-After stretches the delay, but not beyond the maximum wait."""
    wait = _Wait(0.001, 5.0)
    assert wait.after(1, PanelRateLimitedError("slow down", retry_after=2.0)) >= 2.0
    assert wait.after(1, PanelRateLimitedError("slow down", retry_after=60.0)) == 5.0


def test_tenacity_attempts_count_after_the_first_one() -> None:
    """Tenacity's first attempt is the call's second: its wait is the second attempt's."""
    wait = _Wait(0.1, 10.0, done=1)
    delay = wait(_state(1, None))
    assert 0.2 <= delay <= 0.3
