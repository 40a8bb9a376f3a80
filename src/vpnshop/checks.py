"""``vpnshop check``: what is configured, what is off and why, and (with ``--reach``)
whether the configured systems answer."""

from __future__ import annotations

from typing import TextIO

import attrs

from vpnshop.adapters.storage.engine import is_sqlite, normalise_url
from vpnshop.config import Settings


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
    if settings.bot_token and not settings.admin_ids:
        lines.append(
            CheckLine("admins", "warn", "VPNSHOP_ADMIN_IDS is empty: nobody can use the admin menu")
        )
    for name in ("yookassa", "cryptopay", "freekassa", "tribute"):
        if name in settings.providers:
            lines.append(CheckLine(name, "on", "secrets set"))
        else:
            lines.append(CheckLine(name, "off", settings.disabled.get(name, "not configured")))
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


async def reach(settings: Settings) -> list[CheckLine]:
    from vpnshop.adapters.storage.engine import create_engine
    from vpnshop.adapters.storage.migrate import current_revision, head_revision

    lines = []
    engine = create_engine(settings.database_url)
    try:
        current = await current_revision(engine)
        head = head_revision()
        if current == head:
            lines.append(CheckLine("database", "ok", f"reachable, schema at {current}"))
        else:
            lines.append(
                CheckLine(
                    "database",
                    "warn",
                    f"reachable, schema at "
                    f"{current or 'nothing'}, newest is {head}: run "
                    "`vpnshop db upgrade`",
                )
            )
    except Exception as e:  # any failure to reach is reported, not raised
        lines.append(CheckLine("database", "FAIL", f"{type(e).__name__}: {e}"))
    finally:
        await engine.dispose()
    return lines


async def run_checks(settings: Settings, *, reach: bool, out: TextIO) -> int:
    lines = describe(settings)
    if reach:
        lines += await globals()["reach"](settings)
    width = max(len(line.part) for line in lines)
    print("vpnshop configuration:", file=out)
    for line in lines:
        print(f"  {line.part:<{width}}  {line.state:<4}  {line.detail}", file=out)
    failed = [line for line in lines if line.state == "FAIL"]
    return 1 if failed else 0
