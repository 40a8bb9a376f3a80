"""Settings: the panel's naming rules are checked with the adapter's own rule."""

from __future__ import annotations

import pytest

from vpnshop.config import ConfigError, parse_settings

PANEL = {"VPNSHOP_PANEL_URL": "https://panel.example", "VPNSHOP_PANEL_TOKEN": "t"}


def test_username_template_must_fit_the_largest_id() -> None:
    """A template that is valid for short ids but too long for a 19-digit id is refused,
    naming the variable."""
    with pytest.raises(ConfigError) as refused:
        parse_settings(
            {**PANEL, "VPNSHOP_PANEL_USERNAME_TEMPLATE": "customer_abcdefghij_{subscription_id}"}
        )
    [(name, why)] = refused.value.problems
    assert name == "VPNSHOP_PANEL_USERNAME_TEMPLATE"
    assert "19 digits" in why


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VPNSHOP_PANEL_USERNAME_TEMPLATE", "vs_{customer_id}"),
        ("VPNSHOP_PANEL_USERNAME_TEMPLATE", "vs_{nope}_{subscription_id}"),
        ("VPNSHOP_PANEL_TAG", "lowercase"),
    ],
)
def test_bad_panel_naming_is_refused(variable: str, value: str) -> None:
    """Templates without the subscription id or with unknown fields, and bad tags, are
    configuration errors."""
    with pytest.raises(ConfigError) as refused:
        parse_settings({**PANEL, variable: value})
    assert [name for name, _ in refused.value.problems] == [variable]


def test_default_panel_naming_is_accepted() -> None:
    """The defaults pass the rule."""
    settings = parse_settings(PANEL)
    assert settings.panel is not None
    assert settings.panel.username_template == "vs_{subscription_id}"
