"""``vpnshop check``: what is configured, what is off and why, and (with ``--reach``)
whether the configured systems answer."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TextIO

import attrs

from vpnshop.adapters.storage.engine import is_sqlite, normalise_url
from vpnshop.config import Settings
from vpnshop.config.providers import PROVIDERS
from vpnshop.diagnose import database_failure, sqlite_file_problem, sqlite_path


@attrs.frozen
class CheckLine:
    part: str
    state: str  # ok | on | off | warn | FAIL
    detail: str


def describe(settings: Settings) -> list[CheckLine]:
    """The configuration, part by part, without touching the network."""
    url = normalise_url(settings.database_url)
    kind = "embedded SQLite" if is_sqlite(url) else "PostgreSQL"
    safe_url = url.split("@")[-1] if "@" in url else url
    lines = [CheckLine("database", "on", f"{kind}: {safe_url}")]
    if settings.panel:
        lines.append(
            CheckLine(
                "panel",
                "on",
                f"{settings.panel.url} (API line "
                f"{settings.panel.api_line}, tag {settings.panel.tag})",
            )
        )
        if settings.panel.webhook_secret is None:
            lines.append(
                CheckLine(
                    "panel webhooks",
                    "off",
                    "VPNSHOP_PANEL_WEBHOOK_SECRET is not set: the route is off",
                )
            )
    else:
        lines.append(
            CheckLine(
                "panel",
                "warn",
                settings.disabled.get("panel", "") + ": paid time cannot reach a VPN",
            )
        )
    lines.append(
        CheckLine(
            "bot",
            "on" if settings.bot_token else "off",
            "token set" if settings.bot_token else settings.disabled.get("bot", ""),
        )
    )
    if settings.bot_token:
        lines += describe_bot(settings)
    if settings.bot_token and not settings.admin_ids:
        lines.append(
            CheckLine("admins", "warn", "VPNSHOP_ADMIN_IDS is empty: nobody can use the admin menu")
        )
    for name in settings.providers:
        lines.append(CheckLine(name, "on", "settings valid, secrets set"))
    off = [name for name in PROVIDERS if name not in settings.providers]
    if off:
        lines.append(CheckLine("payments", "off", f"not configured: {', '.join(off)}"))
    if settings.providers and not settings.public_url:
        lines.append(
            CheckLine(
                "webhooks",
                "warn",
                "VPNSHOP_PUBLIC_URL is not set: providers "
                "need a public https URL to reach /webhooks/<provider>",
            )
        )
    return lines


def describe_bot(settings: Settings) -> list[CheckLine]:
    """The bot's mode, Bot API, throttling, required channel and support contact."""
    b = settings.bot
    lines = [CheckLine("bot api", "on", b.api_url)]
    if b.mode == "webhook":
        where = f"{settings.public_url}/tg/<VPNSHOP_BOT_WEBHOOK_PATH>"
        listen = f"{b.webhook_host}:{b.webhook_port}"
        lines.append(CheckLine("bot mode", "on", f"webhook: Telegram posts to {where}; {listen}"))
    else:
        lines.append(CheckLine("bot mode", "on", "long polling"))
    shared = "in Redis (shared by replicas)" if b.redis_url else "in memory (one replica)"
    limits = f"{b.throttle_customer}/min customers, {b.throttle_admin}/min admins, {shared}"
    lines.append(CheckLine("throttling", "on", limits))
    if b.required_channel:
        detail = f"{b.required_channel} (the bot must be an admin there)"
        lines.append(CheckLine("required channel", "on", detail))
    if not (b.support_url or b.support_username):
        lines.append(
            CheckLine(
                "support",
                "warn",
                "VPNSHOP_SUPPORT_URL and VPNSHOP_SUPPORT_USERNAME are not set: "
                "customers are told support is unavailable",
            )
        )
    return lines


async def reach_bot(settings: Settings) -> list[CheckLine]:
    """Whether the Bot API at ``VPNSHOP_BOT_API_URL`` accepts the token (getMe)."""
    if settings.bot_token is None:
        return []
    from vpnshop.adapters.telegram import (
        BotApiClient,
        BotApiError,
        BotApiSettings,
        BotApiUnavailableError,
    )

    api = BotApiSettings(settings.bot_token.get(), base_url=settings.bot.api_url, timeout=10)
    try:
        async with BotApiClient(api) as client:
            me = await client.call("getMe", {})
    except BotApiError as e:
        why = "the token is wrong or revoked" if e.error_code == 401 else e.description
        return [CheckLine("bot api", "FAIL", f"{settings.bot.api_url}: {e.error_code} {why}")]
    except BotApiUnavailableError as e:
        return [CheckLine("bot api", "FAIL", f"{settings.bot.api_url}: no answer ({e})")]
    return [CheckLine("bot api", "ok", f"the token is @{me.get('username')}'s")]


async def reach_database(settings: Settings) -> CheckLine:
    """Whether the database opens and its schema is current. A SQLite file that does not
    exist yet is not created here: the first command that uses it creates and migrates
    it (``check`` changes nothing)."""
    from vpnshop.adapters.storage.migrate import HEAD_REVISION, current_revision
    from vpnshop.bootstrap import database

    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        problem = sqlite_file_problem(path)
        if problem is not None:
            return CheckLine("database", "FAIL", f"{path}: {problem}")
        return CheckLine(
            "database", "ok", f"{path} does not exist yet; the first command creates it"
        )
    if path is not None and (problem := sqlite_file_problem(path)) is not None:
        return CheckLine("database", "FAIL", f"{path}: {problem}")
    try:
        async with database(settings) as engine:
            current = await current_revision(engine)
    except Exception as e:  # any failure to reach is reported, not raised
        line = database_failure(settings.database_url, e)
        if line is None:
            raise
        return CheckLine("database", "FAIL", line)
    head = HEAD_REVISION
    if current == head:
        return CheckLine("database", "ok", f"reachable, schema at {current}")
    if current is None and path is not None:
        return CheckLine(
            "database", "warn", "reachable, empty: the first command creates the schema"
        )
    return CheckLine(
        "database",
        "warn",
        f"reachable, schema at {current or 'nothing'}, newest is {head}: run `vpnshop db upgrade`",
    )


async def reach_all(settings: Settings) -> list[CheckLine]:
    return [
        await reach_database(settings),
        *await reach_panel(settings),
        *await reach_bot(settings),
    ]


async def run_checks(settings: Settings, *, reach: bool, out: TextIO) -> int:
    lines = describe(settings)
    if reach:
        lines += await reach_all(settings)
    width = max(len(line.part) for line in lines)
    print("vpnshop configuration:", file=out)
    for line in lines:
        print(f"  {line.part:<{width}}  {line.state:<4}  {line.detail}", file=out)
    failed = [line for line in lines if line.state == "FAIL"]
    return 1 if failed else 0


#: The reads ``vpnshop panel check`` tries, to learn the token's scopes.
PANEL_READS: tuple[tuple[str, str, dict[str, str] | None], ...] = (
    ("users list", "/users", {"start": "0", "size": "1"}),
    ("internal squads", "/internal-squads", None),
    ("system stats", "/system/stats", None),
)


async def panel_report(settings: Settings, out: TextIO) -> int:
    """``vpnshop panel check``: the panel's version and API line, whether the token is
    accepted and which reads it may do, and the internal squads. 1 when the panel cannot
    be reached or refuses the token."""
    from vpnshop.bootstrap import panel_adapter
    from vpnshop.ports.panel import (
        PanelError,
        PanelForbiddenError,
        PanelUnauthorizedError,
        PanelUnavailableError,
    )

    if settings.panel is None:
        print("panel: not configured (set VPNSHOP_PANEL_URL and VPNSHOP_PANEL_TOKEN)", file=out)
        return 1
    print(f"panel: {settings.panel.url}", file=out)
    async with AsyncExitStack() as stack:
        panel = panel_adapter(settings.panel, stack)
        await panel.start(detect_now=False)
        try:
            info = await panel.info()
        except PanelUnauthorizedError as e:
            print(f"  token     REFUSED: the panel does not accept the API token ({e})", file=out)
            return 1
        except PanelUnavailableError as e:
            print(f"  reach     FAIL: the panel cannot be reached: {e}", file=out)
            return 1
        except PanelError as e:
            print(f"  version   FAIL: {e}", file=out)
            return 1
        print(f"  version   {info.version or 'unknown (not reported)'}", file=out)
        print(f"  API line  {info.api_line}", file=out)
        print("  token     accepted", file=out)
        allowed: dict[str, bool] = {}
        width = max(len(name) for name, _, _ in PANEL_READS)
        for name, path, params in PANEL_READS:
            try:
                await panel.probe(path, params)
                state = "ok"
            except PanelForbiddenError:
                state = "forbidden (the token lacks this scope)"
            except PanelUnauthorizedError:
                state = "unauthorised"
            except PanelError as e:
                state = f"failed: {e}"
            allowed[name] = state == "ok"
            print(f"  {name:<{width}}  {state}", file=out)
        if allowed["internal squads"]:
            squads = await panel.squads()
            print(f"squads ({len(squads)}):", file=out)
            for squad in squads:
                print(f"  {squad.uuid}  {squad.name}  members {squad.members}", file=out)
        else:
            print("squads: cannot list them with this token", file=out)
        return 0


async def reach_panel(settings: Settings) -> list[CheckLine]:
    """``vpnshop check --reach``: the panel's version and whether it takes the token."""
    from vpnshop.bootstrap import panel_adapter
    from vpnshop.ports.panel import PanelError, PanelUnauthorizedError

    if settings.panel is None:
        return []
    try:
        async with AsyncExitStack() as stack:
            panel = panel_adapter(settings.panel, stack)
            await panel.start(detect_now=False)
            info = await panel.info()
    except PanelUnauthorizedError as e:
        return [CheckLine("panel", "FAIL", f"the API token is refused: {e}")]
    except (PanelError, OSError) as e:
        return [CheckLine("panel", "FAIL", f"{type(e).__name__}: {e}")]
    return [
        CheckLine(
            "panel",
            "ok",
            f"version {info.version or 'unknown'}, API line {info.api_line}, token accepted",
        )
    ]
