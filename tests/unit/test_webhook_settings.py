"""The webhook server's time-bound settings (issue 9)."""

from __future__ import annotations

import pytest

from vpnshop.config import ConfigError, parse_settings


def test_time_bounds_have_defaults_of_a_few_seconds() -> None:
    """Unset, headers and bodies get 5 s each and idle keep-alive connections 15 s."""
    settings = parse_settings({})
    assert settings.webhooks_header_timeout == 5.0
    assert settings.webhooks_body_timeout == 5.0
    assert settings.webhooks_keepalive_timeout == 15.0


def test_time_bounds_are_read_from_the_environment() -> None:
    """Each bound is a number of seconds taken from its variable."""
    settings = parse_settings(
        {
            "VPNSHOP_WEBHOOKS_HEADER_TIMEOUT": "2.5",
            "VPNSHOP_WEBHOOKS_BODY_TIMEOUT": "10",
            "VPNSHOP_WEBHOOKS_KEEPALIVE_TIMEOUT": "60",
        }
    )
    assert settings.webhooks_header_timeout == 2.5
    assert settings.webhooks_body_timeout == 10.0
    assert settings.webhooks_keepalive_timeout == 60.0


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "301"])
def test_a_bad_time_bound_names_its_variable(value: str) -> None:
    """A value that is not a sane number of seconds is refused, naming the variable."""
    with pytest.raises(ConfigError) as refused:
        parse_settings({"VPNSHOP_WEBHOOKS_BODY_TIMEOUT": value})
    assert "VPNSHOP_WEBHOOKS_BODY_TIMEOUT" in str(refused.value)
