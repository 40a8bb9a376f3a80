"""Which Remnawave version, and so which API line, the panel speaks."""

from __future__ import annotations

import logging
import re
from typing import Any

import attrs

from vpnshop.adapters.remnawave.client import RemnawaveClient
from vpnshop.ports.panel import (
    PanelForbiddenError,
    PanelInvalidError,
    PanelNotFoundError,
    PanelVersionError,
)

log = logging.getLogger(__name__)

SUPPORTED_MIN = (2, 3, 0)
SUPPORTED_BELOW = (4, 0, 0)
SUPPORTED_RANGE = ">=2.3.0,<4.0.0 (2.3-2.8 on the uuid API line, 3.x on the id line)"
MONTH_ROLLING_SINCE = (2, 7, 0)


@attrs.frozen
class Detected:
    version: str | None  # None when the panel did not say (before 2.8, or no scope)
    line: str  # "2" or "3"
    month_rolling: bool  # the MONTH_ROLLING traffic strategy exists (2.7+)
    how: str  # "metadata", "probe" or "settings"


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        return None
    major, minor, patch = (int(g) if g is not None else 0 for g in match.groups())
    return (major, minor, patch)


def unsupported(version: str, why: str = "") -> PanelVersionError:
    extra = f" ({why})" if why else ""
    return PanelVersionError(
        f"Remnawave {version} is not supported{extra}: supported versions are {SUPPORTED_RANGE}"
    )


def classify(version: str) -> Detected:
    """The line for a version string reported by ``/system/metadata``."""
    parsed = parse_version(version)
    if parsed is None:
        raise unsupported(repr(version), "unreadable version")
    if not (SUPPORTED_MIN <= parsed < SUPPORTED_BELOW):
        raise unsupported(version)
    line = "3" if parsed[0] >= 3 else "2"
    return Detected(version, line, parsed >= MONTH_ROLLING_SINCE, "metadata")


async def _probe(client: RemnawaveClient, path: str) -> tuple[str, Any]:
    """``("ok", payload)``, ``("exists", None)`` for a business error on an existing
    route, ``("invalid", None)`` for a validation 400, ``("missing", None)`` for an
    unknown route."""
    try:
        return "ok", await client.request("GET", path)
    except PanelNotFoundError as exc:
        return ("exists" if exc.vendor_code else "missing"), None
    except PanelInvalidError:
        return "invalid", None


async def _has_runtime_metrics(client: RemnawaveClient) -> bool:
    """2.7 replaced the health endpoint's ``pm2Stats`` with ``runtimeMetrics``."""
    try:
        health = await client.request("GET", "/system/health")
    except (PanelForbiddenError, PanelNotFoundError, PanelInvalidError):
        return False
    return isinstance(health, dict) and "runtimeMetrics" in health


async def detect(client: RemnawaveClient, api_line: str) -> Detected:
    """Ask ``/system/metadata`` (2.8+); otherwise probe routes; honour a fixed line."""
    version: str | None = None
    try:
        meta = await client.request("GET", "/system/metadata")
        if isinstance(meta, dict) and meta.get("version"):
            version = str(meta["version"])
    except PanelNotFoundError as exc:
        if exc.vendor_code:  # a business 404 would be odd here; treat like no metadata
            log.warning("remnawave: /system/metadata answered %s", exc)
    except PanelForbiddenError:
        log.info("remnawave: the API token may not read /system/metadata; probing instead")

    if version is not None:
        found = classify(version)
        if api_line != "auto" and api_line != found.line:
            raise PanelVersionError(
                f"settings fix api_line={api_line} but the panel reports version {version} "
                f"(API line {found.line})"
            )
        return found if api_line == "auto" else attrs.evolve(found, how="settings")

    if api_line == "3":
        return Detected(None, "3", True, "settings")
    if api_line == "2":
        return Detected(None, "2", await _has_runtime_metrics(client), "settings")

    # No version endpoint: a panel before 2.8 (or a token without the system scope).
    by_id, _ = await _probe(client, "/users/by-id/1")  # exists on 2.3-2.8 only
    if by_id in ("ok", "exists", "invalid"):
        return Detected(None, "2", await _has_runtime_metrics(client), "probe")
    by_key, _ = await _probe(client, "/users/1")
    if by_key in ("ok", "exists"):  # a numeric id is a valid key: the 3.x line
        return Detected(None, "3", True, "probe")
    if by_key == "invalid":  # "1" is not a uuid, and there is no /users/by-id: 1.x-2.2
        raise unsupported("< 2.3", "no /api/users/by-id route and no /api/system/metadata")
    raise unsupported("unknown", "the API answers neither the 2.x nor the 3.x user routes")
