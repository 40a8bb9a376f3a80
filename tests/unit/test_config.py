"""Settings: every value checked when the settings load, by the rules operators expect."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vpnshop.config import (
    ConfigError,
    Settings,
    TributeSettings,
    YooKassaSettings,
    parse_settings,
    read_env_file,
)
from vpnshop.config.core import TOOLING_VARIABLES, known_variables

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


# -- one home for every setting (issue 10) -----------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_env_file_follows_python_dotenv_rules(tmp_path: Path) -> None:
    """Inline comments, quotes and ``export`` are read as python-dotenv reads them."""
    env = tmp_path / ".env"
    env.write_text(
        "VPNSHOP_LOG_FORMAT=json   # text | json\n"
        "export VPNSHOP_LOG_LEVEL='warning'\n"
        'VPNSHOP_WEBHOOKS_HOST="shop.internal" # one interface\n'
        "VPNSHOP_PUBLIC_URL=https://shop.example/#not-a-comment\n"
    )
    settings = Settings.from_env(env={}, dotenv=env)
    assert (settings.log_format, settings.log_level) == ("json", "warning")
    assert settings.webhooks_host == "shop.internal"
    assert settings.public_url == "https://shop.example/#not-a-comment"


def test_env_file_problems_name_the_file(tmp_path: Path) -> None:
    """A named file that is missing, not UTF-8, or has a line that is not KEY=value is
    a ConfigError naming the file (and line); a missing default ./.env is fine."""
    missing = tmp_path / "nope.env"
    assert Settings.from_env(env={}, dotenv=missing).log_level == "info"
    with pytest.raises(ConfigError, match=r"nope\.env: no such file"):
        Settings.from_env(env={}, dotenv=missing, required=True)
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"VPNSHOP_LOG_LEVEL=info\nVPNSHOP_BOT_TOKEN=caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.env: is not UTF-8"):
        read_env_file(latin)
    broken = tmp_path / "broken.env"
    broken.write_text("VPNSHOP_LOG_LEVEL=info\nthis is not a setting\n")
    with pytest.raises(ConfigError) as refused:
        read_env_file(broken)
    assert refused.value.problems == [(f"{broken}:2", "not a KEY=value line")]


def test_every_provider_value_is_checked_when_settings_load() -> None:
    """Values the gateways or the shell used to refuse only at start-up are refused by
    parse_settings, all at once, by variable name."""
    with pytest.raises(ConfigError) as refused:
        parse_settings(
            {
                "VPNSHOP_YOOKASSA_SHOP_ID": "1",
                "VPNSHOP_YOOKASSA_SECRET_KEY": "k",
                "VPNSHOP_YOOKASSA_VAT_CODE": "13",
                "VPNSHOP_YOOKASSA_ALLOWED_IPS": "nope",
                "VPNSHOP_CRYPTOPAY_TOKEN": "1:abc",
                "VPNSHOP_CRYPTOPAY_NETWORK": "moon",
                "VPNSHOP_TRIBUTE_API_KEY": "k",
                "VPNSHOP_TRIBUTE_PRODUCTS": "garbage",
                "VPNSHOP_TRUSTED_PROXIES": "garbage",
                "VPNSHOP_TRIAL_SQUADS": "not-a-uuid",
            }
        )
    assert sorted(name for name, _ in refused.value.problems) == [
        "VPNSHOP_CRYPTOPAY_NETWORK",
        "VPNSHOP_TRIAL_SQUADS",
        "VPNSHOP_TRIBUTE_PRODUCTS",
        "VPNSHOP_TRUSTED_PROXIES",
        "VPNSHOP_YOOKASSA_ALLOWED_IPS",
        "VPNSHOP_YOOKASSA_VAT_CODE",
    ]


def test_valid_provider_values_become_typed_settings() -> None:
    """Valid values arrive typed: networks normalised, Tribute products split, secrets
    hidden."""
    settings = parse_settings(
        {
            "VPNSHOP_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
            "VPNSHOP_YOOKASSA_SHOP_ID": "1",
            "VPNSHOP_YOOKASSA_SECRET_KEY": "very-secret",
            "VPNSHOP_YOOKASSA_VAT_CODE": "4",
            "VPNSHOP_TRIBUTE_API_KEY": "k",
            "VPNSHOP_TRIBUTE_PRODUCTS": "month=https://t.me/tribute/app?startapp=sA",
        }
    )
    assert settings.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
    yookassa = settings.providers["yookassa"]
    assert isinstance(yookassa, YooKassaSettings) and yookassa.vat_code == 4
    assert "very-secret" not in repr(settings)
    tribute = settings.providers["tribute"]
    assert isinstance(tribute, TributeSettings)
    assert [(p.plan, p.code) for p in tribute.products] == [("month", "sA")]


def test_unknown_variables_are_reported_with_the_closest_name() -> None:
    """A misspelt VPNSHOP_ variable is listed with the closest known name; a removed one
    (VPNSHOP_LOG_CHAT_ID) is unknown too."""
    settings = parse_settings(
        {"VPNSHOP_TRIAL_DAY": "5", "VPNSHOP_LOG_CHAT_ID": "-100", "VPNSHOP_PANEL_TAG": "X"}
    )
    unknown = dict(settings.unknown)
    assert unknown["VPNSHOP_TRIAL_DAY"] == "VPNSHOP_TRIAL_DAYS"
    assert "VPNSHOP_LOG_CHAT_ID" in unknown
    assert "VPNSHOP_PANEL_TAG" not in unknown  # known even while the panel is off


def _documented(name: str, text: str) -> bool:
    parts = name.split("_")
    # docs/configuration.md shortens siblings: `VPNSHOP_TRIAL_TRAFFIC_GB`, `_DEVICE_LIMIT`.
    return name in text or any(f"`_{'_'.join(parts[i:])}`" in text for i in range(2, len(parts)))


def test_docs_and_env_example_name_only_real_settings() -> None:
    """Every VPNSHOP_ variable in .env.example and the configuration docs is one vpnshop
    reads, and every setting is documented."""
    known = known_variables()
    example = (ROOT / ".env.example").read_text()
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for text in (example, docs, (ROOT / "README.md").read_text()):
        named = set(re.findall(r"VPNSHOP_[A-Z0-9_]*[A-Z0-9]", text)) - {"VPNSHOP_TRIAL_DAY"}
        assert named <= known, named - known
    assert [n for n in sorted(known - TOOLING_VARIABLES) if not _documented(n, docs)] == []
