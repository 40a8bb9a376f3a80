"""Remnawave JSON <-> domain objects, for every supported panel shape.

One parser reads the user object of 3.x (numeric ``id``), 2.3-2.8 (``uuid`` + ``id`` +
``userTraffic``) and 2.0-2.2 (``uuid``, traffic fields at top level), so that webhook
deliveries from any of them can be read. The *key* of a user is its ``uuid`` when the
object has one (the 2.x primary key) and its ``id`` otherwise (3.x).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vpnshop.domain.panel import PanelDevice, PanelStats, PanelStatus, PanelUser, Squad
from vpnshop.domain.plan import TrafficReset


class MappingError(ValueError):
    """A panel object lacks a field the shop needs, or has one of the wrong type."""


def parse_dt(value: Any) -> datetime:
    """A panel timestamp (``2026-12-22T13:00:36.000Z``; offsets accepted) as aware UTC."""
    if not isinstance(value, str) or not value:
        raise MappingError(f"expected an ISO timestamp, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MappingError(f"unreadable timestamp {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_optional_dt(value: Any) -> datetime | None:
    return None if value is None else parse_dt(value)


def format_dt(value: datetime) -> str:
    """The panel's own format: UTC, milliseconds, ``Z``. Naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def truncate_ms(value: datetime) -> datetime:
    """*value* at the panel's precision (milliseconds), aware UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _int(value: Any, name: str, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise MappingError(f"{name} is missing")
        return default
    if isinstance(value, bool):
        raise MappingError(f"{name} must be a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise MappingError(f"{name} must be an integer, got {value!r}")


def _opt_int(value: Any, name: str) -> int | None:
    return None if value is None else _int(value, name)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def user_key(data: Mapping[str, Any]) -> str:
    """The primary key of a panel user object: ``uuid`` on 2.x, ``id`` on 3.x."""
    if data.get("uuid"):
        return str(data["uuid"])
    if data.get("id") is not None:
        return str(_int(data["id"], "id"))
    raise MappingError("the user object has neither uuid nor id")


def user_from_panel(data: Any) -> PanelUser:
    """A panel user object of any supported version as a :class:`PanelUser`."""
    if not isinstance(data, Mapping):
        raise MappingError(f"expected a user object, got {type(data).__name__}")
    try:
        status = PanelStatus(data["status"])
    except (KeyError, ValueError) as exc:
        raise MappingError(f"unknown user status {data.get('status')!r}") from exc
    try:
        reset = TrafficReset(data.get("trafficLimitStrategy") or "NO_RESET")
    except ValueError as exc:
        raise MappingError(
            f"unknown trafficLimitStrategy {data.get('trafficLimitStrategy')!r}"
        ) from exc
    traffic = data.get("userTraffic")
    # 2.3+ nest the traffic fields in userTraffic; 2.0-2.2 have them at top level.
    source: Mapping[str, Any] = traffic if isinstance(traffic, Mapping) else data
    squads = data.get("activeInternalSquads") or []
    squad_ids: list[str] = []
    for squad in squads:
        if isinstance(squad, Mapping) and squad.get("uuid"):
            squad_ids.append(str(squad["uuid"]))
        elif isinstance(squad, str):
            squad_ids.append(squad)
    username = data.get("username")
    if not isinstance(username, str):
        raise MappingError("the user object has no username")
    return PanelUser(
        key=user_key(data),
        username=username,
        short_uuid=str(data.get("shortUuid") or ""),
        status=status,
        expires_at=parse_dt(data.get("expireAt")),
        subscription_url=str(data.get("subscriptionUrl") or ""),
        traffic_limit_bytes=_int(data.get("trafficLimitBytes"), "trafficLimitBytes", 0),
        traffic_reset=reset,
        used_traffic_bytes=_int(source.get("usedTrafficBytes"), "usedTrafficBytes", 0),
        lifetime_used_traffic_bytes=_int(
            source.get("lifetimeUsedTrafficBytes"), "lifetimeUsedTrafficBytes", 0
        ),
        device_limit=_opt_int(data.get("hwidDeviceLimit"), "hwidDeviceLimit"),
        internal_squads=tuple(squad_ids),
        external_squad=_opt_str(data.get("externalSquadUuid")),
        telegram_id=_opt_int(data.get("telegramId"), "telegramId"),
        email=_opt_str(data.get("email")),
        description=_opt_str(data.get("description")),
        tag=_opt_str(data.get("tag")),
        online_at=parse_optional_dt(source.get("onlineAt")),
        first_connected_at=parse_optional_dt(source.get("firstConnectedAt")),
        created_at=parse_optional_dt(data.get("createdAt")),
    )


def device_from_panel(data: Any) -> PanelDevice:
    if not isinstance(data, Mapping) or not data.get("hwid"):
        raise MappingError(f"expected a HWID device object, got {data!r}")
    return PanelDevice(
        hwid=str(data["hwid"]),
        platform=_opt_str(data.get("platform")),
        os_version=_opt_str(data.get("osVersion")),
        device_model=_opt_str(data.get("deviceModel")),
        user_agent=_opt_str(data.get("userAgent")),
        created_at=parse_optional_dt(data.get("createdAt")),
    )


def devices_from_panel(payload: Any) -> list[PanelDevice]:
    """``{"total": n, "devices": [...]}`` (or a bare list) as devices."""
    items = payload.get("devices") if isinstance(payload, Mapping) else payload
    if not isinstance(items, list):
        raise MappingError(f"expected a device list, got {payload!r}")
    return [device_from_panel(item) for item in items]


def _member(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, Mapping) else {}


def squad_from_panel(data: Any) -> Squad:
    if not isinstance(data, Mapping) or not data.get("uuid"):
        raise MappingError(f"expected an internal squad object, got {data!r}")
    info = _member(data, "info")
    return Squad(
        uuid=str(data["uuid"]),
        name=str(data.get("name") or ""),
        members=_int(info.get("membersCount"), "membersCount", 0),
    )


def stats_from_panel(data: Any) -> PanelStats:
    if not isinstance(data, Mapping):
        raise MappingError(f"expected a stats object, got {data!r}")
    users = _member(data, "users")
    counts = _member(users, "statusCounts")
    online = _member(data, "onlineStats")
    nodes = _member(data, "nodes")
    return PanelStats(
        users_total=_int(users.get("totalUsers"), "totalUsers", 0),
        users_by_status={str(k): _int(v, str(k), 0) for k, v in counts.items()},
        online_now=_int(online.get("onlineNow"), "onlineNow", 0),
        nodes_online=_int(nodes.get("totalOnline"), "totalOnline", 0),
    )
