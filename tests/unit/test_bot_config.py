"""The bot's settings: defaults, and each bad value named with its variable."""

from __future__ import annotations

import pytest

from vpnshop.config import ConfigError, parse_settings

TOKEN = "123456:AAH-emulatorTokenForVpnshopBotTests_0123"


def problems(env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        parse_settings(env)
    return dict(e.value.problems)


def test_defaults() -> None:
    """Without bot variables: Telegram's API, polling, 30/100 per minute, metrics on 9091."""
    bot = parse_settings({"VPNSHOP_BOT_TOKEN": TOKEN}).bot
    assert bot.api_url == "https://api.telegram.org"
    assert (bot.mode, bot.throttle_customer, bot.throttle_admin) == ("polling", 30, 100)
    assert bot.redis_url is None
    assert bot.metrics_port == 9091


def test_webhook_mode_needs_public_url_path_and_secret() -> None:
    """Webhook mode without the public URL, the secret path and the secret names all three."""
    found = problems({"VPNSHOP_BOT_TOKEN": TOKEN, "VPNSHOP_BOT_MODE": "webhook"})
    assert set(found) == {
        "VPNSHOP_PUBLIC_URL",
        "VPNSHOP_BOT_WEBHOOK_PATH",
        "VPNSHOP_BOT_WEBHOOK_SECRET",
    }


def test_bad_values_are_named() -> None:
    """A bad token, API URL, secret, Redis URL, channel, username or limit each fails."""
    found = problems(
        {
            "VPNSHOP_BOT_TOKEN": "nope",
            "VPNSHOP_BOT_API_URL": "ftp://x",
            "VPNSHOP_BOT_WEBHOOK_SECRET": "short",
            "VPNSHOP_REDIS_URL": "http://redis",
            "VPNSHOP_REQUIRED_CHANNEL": "news",
            "VPNSHOP_SUPPORT_USERNAME": "@a b",
            "VPNSHOP_BOT_THROTTLE_CUSTOMER": "0",
        }
    )
    assert set(found) == {
        "VPNSHOP_BOT_TOKEN",
        "VPNSHOP_BOT_API_URL",
        "VPNSHOP_BOT_WEBHOOK_SECRET",
        "VPNSHOP_REDIS_URL",
        "VPNSHOP_REQUIRED_CHANNEL",
        "VPNSHOP_SUPPORT_USERNAME",
        "VPNSHOP_BOT_THROTTLE_CUSTOMER",
    }


def test_secrets_do_not_print() -> None:
    """The webhook secret and the Redis URL (with its password) never appear in a repr."""
    settings = parse_settings(
        {
            "VPNSHOP_BOT_TOKEN": TOKEN,
            "VPNSHOP_BOT_WEBHOOK_SECRET": "sup3r_secret_value_123",
            "VPNSHOP_REDIS_URL": "redis://:hunter2@redis:6379/0",
        }
    )
    assert "sup3r" not in repr(settings)
    assert "hunter2" not in repr(settings)
