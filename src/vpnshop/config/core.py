"""Settings from the environment and an optional ``.env`` file.

Every value is parsed and checked before anything starts; all problems are reported at
once, each with the variable's name and what is wrong. Secrets are ``Secret`` values:
they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import attrs

from vpnshop.config.bot import BotSettings, read_bot
from vpnshop.config.customer_jobs import CustomerJobSettings, read_customer_jobs
from vpnshop.config.envfile import read_env_file
from vpnshop.config.providers import ProviderSettings, parse_providers
from vpnshop.config.reader import (
    ConfigError,
    Reader,
    Secret,
    choice,
    int_list,
    integer,
    networks,
    seconds,
    url,
    uuids,
)
from vpnshop.config.scheduler import SchedulerSettings, read_scheduler
from vpnshop.domain.errors import ValidationError
from vpnshop.domain.panel import SHOP_TAG_PATTERN, check_username_template

DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///vpnshop.db"  # a file in the working directory


DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg", "postgres")


def _database_url(value: str) -> str:
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in DATABASE_SCHEMES:
        raise ValueError("expected sqlite:///path.db or postgresql://user:password@host/db")
    return value


@attrs.frozen
class PanelSettings:
    url: str
    token: Secret
    api_line: str = "auto"
    tag: str = "VPNSHOP"
    username_template: str = "vs_{subscription_id}"
    webhook_secret: Secret | None = None
    x_api_key: Secret | None = None


@attrs.frozen
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "info"
    log_format: str = "text"
    default_currency: str = "RUB"
    bot_token: Secret | None = None
    admin_ids: tuple[int, ...] = ()
    public_url: str | None = None
    webhooks_host: str = "127.0.0.1"
    webhooks_port: int = 8080
    trusted_proxies: tuple[str, ...] = ()  # CIDR networks, checked when read
    # Time bounds of the webhook server (seconds): a request's headers and its body must
    # each arrive within their limit; an idle keep-alive connection is closed after the last.
    webhooks_header_timeout: float = 5.0
    webhooks_body_timeout: float = 5.0
    webhooks_keepalive_timeout: float = 15.0
    panel: PanelSettings | None = None
    trial_days: int = 3
    trial_traffic_gb: int = 10
    trial_device_limit: int = 1
    trial_squads: tuple[str, ...] = ()
    referral_percent: int = 0
    referral_bonus_days_referrer: int = 0
    referral_bonus_days_referee: int = 0
    providers: Mapping[str, ProviderSettings] = attrs.field(factory=dict)
    sentry_dsn: Secret | None = None
    bot: BotSettings = attrs.field(factory=BotSettings)
    scheduler: SchedulerSettings = attrs.field(factory=SchedulerSettings)
    customer_jobs: CustomerJobSettings = attrs.field(factory=CustomerJobSettings)
    disabled: Mapping[str, str] = attrs.field(factory=dict)  # part -> why it is off
    # VPNSHOP_ variables nobody reads, each with the closest known name, if any.
    unknown: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        dotenv: Path | None = Path(".env"),
        *,
        required: bool = False,
    ) -> Settings:
        """Settings from *env* (default: the process environment) over the *dotenv*
        file. A missing file is fine unless *required* (an ``--env-file`` the operator
        named); an unreadable one is always a ConfigError naming it."""
        merged: dict[str, str] = {}
        if dotenv is not None:
            merged.update(read_env_file(dotenv, required=required))
        merged.update(os.environ if env is None else env)  # the environment wins
        return parse_settings(merged)


def _panel(r: Reader, disabled: dict[str, str]) -> PanelSettings | None:
    # Every panel variable is read even when the panel is off, so that each is a known
    # name (see Reader.unknown) and a typo in one is still reported.
    panel_url = r.get("PANEL_URL", url(("http", "https")), None)
    panel_token = r.secret("PANEL_TOKEN")
    api_line = r.get("PANEL_API_LINE", choice("auto", "2", "3"), "auto")
    tag = r.get("PANEL_TAG", str, "VPNSHOP")
    template = r.get("PANEL_USERNAME_TEMPLATE", str, "vs_{subscription_id}")
    webhook_secret = r.secret("PANEL_WEBHOOK_SECRET")
    x_api_key = r.secret("PANEL_X_API_KEY")
    if not (panel_url and panel_token):
        if panel_url or panel_token:
            missing = "PANEL_TOKEN" if panel_url else "PANEL_URL"
            r.problem(missing, "is required when the panel is configured")
        else:
            disabled["panel"] = "VPNSHOP_PANEL_URL and VPNSHOP_PANEL_TOKEN are not set"
        return None
    if not SHOP_TAG_PATTERN.match(tag):
        r.problem("PANEL_TAG", "must be 1-16 of A-Z, 0-9 and _")
    try:
        check_username_template(template)  # the same rule the panel adapter applies
    except ValidationError as e:
        r.problem("PANEL_USERNAME_TEMPLATE", str(e))
    if webhook_secret is not None and not re.fullmatch(r"[a-zA-Z0-9]{32,}", webhook_secret.get()):
        r.problem(
            "PANEL_WEBHOOK_SECRET",
            "must be at least 32 letters and digits (as the panel requires)",
        )
    return PanelSettings(
        url=panel_url,
        token=panel_token,
        api_line=api_line,
        tag=tag,
        username_template=template,
        webhook_secret=webhook_secret,
        x_api_key=x_api_key,
    )


# Read by the test tooling, not by the shop; known so that they draw no warning.
TOOLING_VARIABLES: Final = frozenset({"VPNSHOP_REQUIRE_POSTGRES", "VPNSHOP_REQUIRE_ZBAR"})


def parse_settings(env: Mapping[str, str]) -> Settings:
    """Every setting parsed and checked; raises ConfigError listing every bad value."""
    r = Reader(env)
    r.asked |= TOOLING_VARIABLES
    settings = _read(r)
    if r.problems:
        raise ConfigError(r.problems)
    return attrs.evolve(settings, unknown=tuple(r.unknown()))


def known_variables() -> frozenset[str]:
    """Every ``VPNSHOP_`` variable vpnshop reads (docs and .env.example are checked
    against it)."""
    r = Reader({})
    _read(r)
    return frozenset(r.asked)


def _read(r: Reader) -> Settings:
    disabled: dict[str, str] = {}
    database_url = r.get("DATABASE_URL", _database_url, DEFAULT_DATABASE_URL)
    panel = _panel(r, disabled)
    default_currency = r.get("DEFAULT_CURRENCY", choice("rub", "usd", "eur"), "rub").upper()
    providers = parse_providers(r, default_currency, disabled)
    bot_token = r.secret("BOT_TOKEN")
    if bot_token is not None and not re.fullmatch(r"\d+:[A-Za-z0-9_-]{30,}", bot_token.get()):
        r.problem("BOT_TOKEN", "does not look like a bot token (123:ABC...)")
    if bot_token is None:
        disabled["bot"] = "VPNSHOP_BOT_TOKEN is not set"
    public_url = r.get("PUBLIC_URL", url(("https", "http")), None)
    bot = read_bot(r, public_url=public_url, token_set=bot_token is not None)
    settings = Settings(
        database_url=database_url,
        log_level=r.get("LOG_LEVEL", choice("debug", "info", "warning", "error"), "info"),
        log_format=r.get("LOG_FORMAT", choice("text", "json"), "text"),
        default_currency=default_currency,
        bot_token=bot_token,
        admin_ids=r.get("ADMIN_IDS", int_list, ()),
        public_url=public_url,
        webhooks_host=r.get("WEBHOOKS_HOST", str, "127.0.0.1"),
        webhooks_port=r.get("WEBHOOKS_PORT", integer(0, 65535), 8080),
        trusted_proxies=r.get("TRUSTED_PROXIES", networks, ()),
        webhooks_header_timeout=r.get("WEBHOOKS_HEADER_TIMEOUT", seconds(0.1, 300), 5.0),
        webhooks_body_timeout=r.get("WEBHOOKS_BODY_TIMEOUT", seconds(0.1, 300), 5.0),
        webhooks_keepalive_timeout=r.get("WEBHOOKS_KEEPALIVE_TIMEOUT", seconds(0.1, 3600), 15.0),
        panel=panel,
        trial_days=r.get("TRIAL_DAYS", integer(0, 365), 3),
        trial_traffic_gb=r.get("TRIAL_TRAFFIC_GB", integer(0), 10),
        trial_device_limit=r.get("TRIAL_DEVICE_LIMIT", integer(0), 1),
        trial_squads=r.get("TRIAL_SQUADS", uuids, ()),
        referral_percent=r.get("REFERRAL_PERCENT", integer(0, 100), 0),
        referral_bonus_days_referrer=r.get("REFERRAL_BONUS_DAYS_REFERRER", integer(0, 365), 0),
        referral_bonus_days_referee=r.get("REFERRAL_BONUS_DAYS_REFEREE", integer(0, 365), 0),
        providers=providers,
        sentry_dsn=r.secret("SENTRY_DSN"),
        bot=bot,
        scheduler=read_scheduler(r),
        customer_jobs=read_customer_jobs(r),
        disabled=disabled,
    )
    return settings
