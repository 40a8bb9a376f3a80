"""The bot's settings (``VPNSHOP_BOT_*``, Redis, the required channel, support).

``VPNSHOP_BOT_API_URL`` is read by every process: each Telegram call (aiogram in the bot,
``BotApiClient`` in the webhook server and the scheduler) goes to that base URL.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from vpnshop.config.reader import Reader, Secret, boolean, choice, integer, url

TELEGRAM_API: Final = "https://api.telegram.org"
_CHANNEL = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}|-100\d{5,15}")
_PATH = re.compile(r"[A-Za-z0-9_-]{16,128}")
_HEADER_SECRET = re.compile(r"[A-Za-z0-9_-]{16,256}")  # what setWebhook accepts
_USERNAME = re.compile(r"@?[A-Za-z][A-Za-z0-9_]{3,31}")


@attrs.frozen
class BotSettings:
    """``mode`` polling (default) or webhook: then Telegram posts to
    ``{public_url}/tg/{webhook_path}`` with ``webhook_secret`` in its secret header, and
    the bot listens on ``webhook_host:webhook_port`` behind the operator's proxy."""

    api_url: str = TELEGRAM_API
    mode: str = "polling"
    webhook_path: Secret | None = None
    webhook_secret: Secret | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8081
    throttle_customer: int = 30  # updates per minute
    throttle_admin: int = 100
    redis_url: Secret | None = None  # throttling and FSM storage shared by replicas
    required_channel: str | None = None  # @username or -100... id
    support_url: str | None = None
    support_username: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9091  # 0: no metrics server
    # Top-up in the shop's default currency, major units: the preset buttons and the
    # range a typed amount must be in.
    topup_amounts: tuple[int, ...] = (100, 300, 500, 1000)
    topup_min: int = 50
    topup_max: int = 50000
    stars: bool = True  # offer Telegram Stars (plans with an XTR price) when the token is set

    def webhook_url(self, public_url: str) -> str:
        assert self.webhook_path is not None
        return f"{public_url.rstrip('/')}/tg/{self.webhook_path.get()}"


def read_bot(r: Reader, *, public_url: str | None, token_set: bool) -> BotSettings:
    """Every bot variable, checked; webhook mode needs the public URL and both secrets."""
    mode = r.get("BOT_MODE", choice("polling", "webhook"), "polling")
    path = r.secret("BOT_WEBHOOK_PATH")
    secret = r.secret("BOT_WEBHOOK_SECRET")
    if path is not None and not _PATH.fullmatch(path.get()):
        r.problem("BOT_WEBHOOK_PATH", "must be 16-128 of A-Z, a-z, 0-9, _ and -")
    if secret is not None and not _HEADER_SECRET.fullmatch(secret.get()):
        r.problem("BOT_WEBHOOK_SECRET", "must be 16-256 of A-Z, a-z, 0-9, _ and -")
    if mode == "webhook" and token_set:
        if public_url is None:
            r.problem("PUBLIC_URL", "is required when VPNSHOP_BOT_MODE=webhook")
        for name, value in (("BOT_WEBHOOK_PATH", path), ("BOT_WEBHOOK_SECRET", secret)):
            if value is None:
                r.problem(name, "is required when VPNSHOP_BOT_MODE=webhook")
    redis = r.secret("REDIS_URL")
    if redis is not None and not re.match(r"rediss?://", redis.get()):
        r.problem("REDIS_URL", "expected redis://host:6379/0 or rediss://...")
    channel = r.get("REQUIRED_CHANNEL", str, None)
    if channel is not None and not _CHANNEL.fullmatch(channel):
        r.problem("REQUIRED_CHANNEL", "expected @channelname or a -100... chat id")
    username = r.get("SUPPORT_USERNAME", str, None)
    if username is not None and not _USERNAME.fullmatch(username):
        r.problem("SUPPORT_USERNAME", "expected a Telegram username such as @shop_support")
    amounts = r.get("TOPUP_AMOUNTS", str, "100,300,500,1000")
    presets: list[int] = []
    for part in amounts.split(","):
        if part.strip().isdigit() and 0 < int(part) <= 10_000_000:
            presets.append(int(part))
        else:
            r.problem("TOPUP_AMOUNTS", f"expected whole amounts such as 100,300,500; got {part!r}")
            break
    low = r.get("TOPUP_MIN", integer(1, 10_000_000), 50)
    high = r.get("TOPUP_MAX", integer(1, 10_000_000), 50000)
    if low > high:
        r.problem("TOPUP_MIN", f"is above VPNSHOP_TOPUP_MAX ({high})")
    return BotSettings(
        topup_amounts=tuple(presets),
        topup_min=low,
        topup_max=high,
        stars=r.get("STARS_ENABLED", boolean, True),
        api_url=r.get("BOT_API_URL", url(("https", "http")), TELEGRAM_API).rstrip("/"),
        mode=mode,
        webhook_path=path,
        webhook_secret=secret,
        webhook_host=r.get("BOT_WEBHOOK_HOST", str, "127.0.0.1"),
        webhook_port=r.get("BOT_WEBHOOK_PORT", integer(0, 65535), 8081),
        throttle_customer=r.get("BOT_THROTTLE_CUSTOMER", integer(1, 10_000), 30),
        throttle_admin=r.get("BOT_THROTTLE_ADMIN", integer(1, 10_000), 100),
        redis_url=redis,
        required_channel=channel,
        support_url=r.get("SUPPORT_URL", url(("https", "http", "tg")), None),
        support_username=username.lstrip("@") if username else None,
        metrics_host=r.get("BOT_METRICS_HOST", str, "127.0.0.1"),
        metrics_port=r.get("BOT_METRICS_PORT", integer(0, 65535), 9091),
    )
