"""Settings from the environment and an optional ``.env`` file.

Every value is parsed and checked before anything starts; all problems are reported at
once, each with the variable's name and what is wrong. Secrets are ``Secret`` values:
they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from vpnshop.domain.errors import ValidationError
from vpnshop.domain.panel import SHOP_TAG_PATTERN, check_username_template

T = TypeVar("T")
PREFIX: Final = "VPNSHOP_"
DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///vpnshop.db"  # a file in the working directory


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists (variable, what is wrong)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {name}: {why}" for name, why in problems)
        super().__init__(f"invalid configuration:\n{lines}")


@attrs.frozen(repr=False)
class Secret:
    """A secret string that does not print itself."""

    _value: str = attrs.field(repr=False)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines; ``#`` comments; optional matching quotes; no interpolation."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ConfigError([(f"{path}:{number}", "not a KEY=value line")])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


class _Reader:
    """Reads typed values and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[str, str]] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(PREFIX + name)
        return value.strip() if value is not None and value.strip() != "" else None

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, TypeError) as e:
            self.problems.append((PREFIX + name, str(e) or "invalid value"))
            return default

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.get(name, str, default)

    def secret(self, name: str) -> Secret | None:
        value = self.raw(name)
        return Secret(value) if value is not None else None


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if lo is not None and number < lo:
            raise ValueError(f"must be at least {lo}, got {number}")
        if hi is not None and number > hi:
            raise ValueError(f"must be at most {hi}, got {number}")
        return number

    return parse


def _seconds(lo: float, hi: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {value!r}") from None
        if not lo <= number <= hi:  # also refuses nan
            raise ValueError(f"must be between {lo:g} and {hi:g} seconds, got {value}")
        return number

    return parse


def _bool(value: str) -> bool:
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _int_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in re.split(r"[,\s]+", value) if v)
    except ValueError:
        raise ValueError(f"expected comma-separated whole numbers, got {value!r}") from None


def _str_list(value: str) -> tuple[str, ...]:
    return tuple(v for v in re.split(r"[,\s]+", value) if v)


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in schemes:
            raise ValueError(f"expected a URL starting with {' or '.join(schemes)}://")
        return value.rstrip("/")

    return parse


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
class ProviderSettings:
    """A payment provider's raw settings (the adapter validates them in detail)."""

    name: str
    values: Mapping[str, Any] = attrs.field(repr=False)


@attrs.frozen
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "info"
    log_format: str = "text"
    default_currency: str = "RUB"
    bot_token: Secret | None = None
    admin_ids: tuple[int, ...] = ()
    log_chat_id: int | None = None
    public_url: str | None = None
    webhooks_host: str = "127.0.0.1"
    webhooks_port: int = 8080
    trusted_proxies: tuple[str, ...] = ()
    # Time bounds of the webhook server (seconds): a request's headers and its body must
    # each arrive within their limit; an idle keep-alive connection is closed after the last.
    webhook_header_timeout: float = 5.0
    webhook_body_timeout: float = 5.0
    webhook_keepalive_timeout: float = 15.0
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
    disabled: Mapping[str, str] = attrs.field(factory=dict)  # part -> why it is off

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
    ) -> Settings:
        merged: dict[str, str] = {}
        if dotenv is not None:
            merged.update(read_dotenv(dotenv))
        merged.update(os.environ if env is None else env)  # the environment wins
        return parse_settings(merged)


PROVIDER_FIELDS: Final[Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # provider: (required variables, optional variables), after the VPNSHOP_ prefix
    "yookassa": (
        ("YOOKASSA_SHOP_ID", "YOOKASSA_SECRET_KEY"),
        (
            "YOOKASSA_RETURN_URL",
            "YOOKASSA_API_URL",
            "YOOKASSA_VAT_CODE",
            "YOOKASSA_SEND_RECEIPT",
            "YOOKASSA_ALLOWED_IPS",
        ),
    ),
    "cryptopay": (
        ("CRYPTOPAY_TOKEN",),
        ("CRYPTOPAY_NETWORK", "CRYPTOPAY_API_URL", "CRYPTOPAY_ASSETS", "CRYPTOPAY_FIAT"),
    ),
    # FreeKassa's order API wants the payer's IP; a Telegram bot never sees it, so the
    # shop's own public address is configured instead.
    "freekassa": (
        (
            "FREEKASSA_SHOP_ID",
            "FREEKASSA_API_KEY",
            "FREEKASSA_SECRET_WORD_2",
            "FREEKASSA_CUSTOMER_IP",
        ),
        ("FREEKASSA_API_URL", "FREEKASSA_PAYMENT_SYSTEM", "FREEKASSA_ALLOWED_IPS"),
    ),
    "tribute": (("TRIBUTE_API_KEY", "TRIBUTE_PRODUCTS"), ()),
}
SECRET_SUFFIXES: Final = ("TOKEN", "SECRET_KEY", "API_KEY", "SECRET_WORD_2", "SECRET")


def parse_settings(env: Mapping[str, str]) -> Settings:
    r = _Reader(env)
    disabled: dict[str, str] = {}
    database_url = r.get("DATABASE_URL", _database_url, DEFAULT_DATABASE_URL)
    panel = None
    panel_url = r.get("PANEL_URL", _url(("http", "https")), None)
    panel_token = r.secret("PANEL_TOKEN")
    if panel_url and panel_token:
        tag = r.get("PANEL_TAG", str, "VPNSHOP")
        if not SHOP_TAG_PATTERN.match(tag):
            r.problems.append((PREFIX + "PANEL_TAG", "must be 1-16 of A-Z, 0-9 and _"))
        template = r.get("PANEL_USERNAME_TEMPLATE", str, "vs_{subscription_id}")
        try:
            check_username_template(template)  # the same rule the panel adapter applies
        except ValidationError as e:
            r.problems.append((PREFIX + "PANEL_USERNAME_TEMPLATE", str(e)))
        panel = PanelSettings(
            url=panel_url,
            token=panel_token,
            api_line=r.get("PANEL_API_LINE", _choice("auto", "2", "3"), "auto"),
            tag=tag,
            username_template=template,
            webhook_secret=r.secret("PANEL_WEBHOOK_SECRET"),
            x_api_key=r.secret("PANEL_X_API_KEY"),
        )
        secret = panel.webhook_secret
        if secret is not None and not re.fullmatch(r"[a-zA-Z0-9]{32,}", secret.get()):
            r.problems.append(
                (
                    PREFIX + "PANEL_WEBHOOK_SECRET",
                    "must be at least 32 letters and digits (as the panel requires)",
                )
            )
    elif panel_url or panel_token:
        missing = "PANEL_TOKEN" if panel_url else "PANEL_URL"
        r.problems.append((PREFIX + missing, "is required when the panel is configured"))
    else:
        disabled["panel"] = "VPNSHOP_PANEL_URL and VPNSHOP_PANEL_TOKEN are not set"

    providers: dict[str, ProviderSettings] = {}
    for name, (required, optional) in PROVIDER_FIELDS.items():
        present = {f: r.raw(f) for f in (*required, *optional)}
        if not any(present[f] for f in required):
            disabled[name] = "not configured"
            continue
        absent = [PREFIX + f for f in required if not present[f]]
        if absent:
            for var in absent:
                r.problems.append((var, f"is required to enable {name}"))
            continue
        values: dict[str, Any] = {
            f.removeprefix(name.upper() + "_").lower(): Secret(v)
            if f.endswith(SECRET_SUFFIXES)
            else v
            for f, v in present.items()
            if v is not None
        }
        providers[name] = ProviderSettings(name, values)

    settings = Settings(
        database_url=database_url,
        log_level=r.get("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info"),
        log_format=r.get("LOG_FORMAT", _choice("text", "json"), "text"),
        default_currency=r.get("DEFAULT_CURRENCY", _choice("rub", "usd", "eur"), "rub").upper(),
        bot_token=r.secret("BOT_TOKEN"),
        admin_ids=r.get("ADMIN_IDS", _int_list, ()),
        log_chat_id=r.get("LOG_CHAT_ID", _int(), None),
        public_url=r.get("PUBLIC_URL", _url(("https", "http")), None),
        webhooks_host=r.get("WEBHOOKS_HOST", str, "127.0.0.1"),
        webhooks_port=r.get("WEBHOOKS_PORT", _int(0, 65535), 8080),
        trusted_proxies=r.get("TRUSTED_PROXIES", _str_list, ()),
        webhook_header_timeout=r.get("WEBHOOK_HEADER_TIMEOUT", _seconds(0.1, 300), 5.0),
        webhook_body_timeout=r.get("WEBHOOK_BODY_TIMEOUT", _seconds(0.1, 300), 5.0),
        webhook_keepalive_timeout=r.get("WEBHOOK_KEEPALIVE_TIMEOUT", _seconds(0.1, 3600), 15.0),
        panel=panel,
        trial_days=r.get("TRIAL_DAYS", _int(0, 365), 3),
        trial_traffic_gb=r.get("TRIAL_TRAFFIC_GB", _int(0), 10),
        trial_device_limit=r.get("TRIAL_DEVICE_LIMIT", _int(0), 1),
        trial_squads=r.get("TRIAL_SQUADS", _str_list, ()),
        referral_percent=r.get("REFERRAL_PERCENT", _int(0, 100), 0),
        referral_bonus_days_referrer=r.get("REFERRAL_BONUS_DAYS_REFERRER", _int(0, 365), 0),
        referral_bonus_days_referee=r.get("REFERRAL_BONUS_DAYS_REFEREE", _int(0, 365), 0),
        providers=providers,
        sentry_dsn=r.secret("SENTRY_DSN"),
        disabled=disabled,
    )
    if settings.bot_token is not None and not re.fullmatch(
        r"\d+:[A-Za-z0-9_-]{30,}", settings.bot_token.get()
    ):
        r.problems.append((PREFIX + "BOT_TOKEN", "does not look like a bot token (123:ABC...)"))
    if settings.bot_token is None:
        disabled["bot"] = "VPNSHOP_BOT_TOKEN is not set"
    if r.problems:
        raise ConfigError(r.problems)
    return settings
