"""Panel JSON <-> domain objects, and panel errors -> port errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from vpnshop.adapters.remnawave.errors import (
    PanelRateLimitedError,
    translate_error,
)
from vpnshop.adapters.remnawave.mapping import (
    MappingError,
    format_dt,
    parse_dt,
    stats_from_panel,
    user_from_panel,
)
from vpnshop.domain.panel import PanelStatus
from vpnshop.domain.plan import TrafficReset
from vpnshop.ports.panel import (
    PanelConflictError,
    PanelForbiddenError,
    PanelInvalidError,
    PanelNotFoundError,
    PanelUnauthorizedError,
    PanelUnavailableError,
)

V3_USER = {
    "id": 2,
    "shortUuid": "cvXTDzKekDgmnV_5",
    "username": "tg_123456789",
    "status": "ACTIVE",
    "trafficLimitBytes": 10737418240,
    "trafficLimitStrategy": "MONTH",
    "expireAt": "2026-12-22T13:00:36.000Z",
    "telegramId": 123456789,
    "email": "u@example.com",
    "description": "created by bot",
    "tag": "BOT_PLAN_1",
    "hwidDeviceLimit": 3,
    "externalSquadUuid": None,
    "trojanPassword": "x",
    "vlessUuid": "y",
    "ssPassword": "z",
    "lastTriggeredThreshold": 0,
    "subRevokedAt": None,
    "lastTrafficResetAt": None,
    "createdAt": "2026-11-22T13:00:36.608Z",
    "updatedAt": "2026-11-22T13:00:36.608Z",
    "subscriptionUrl": "https://panel.example.test/api/sub/cvXTDzKekDgmnV_5",
    "activeInternalSquads": [
        {"uuid": "6947abca-5fbe-4698-be62-5f5fe47ec073", "name": "Default-Squad"}
    ],
    "userTraffic": {
        "usedTrafficBytes": 5,
        "lifetimeUsedTrafficBytes": 6,
        "onlineAt": None,
        "lastConnectedNodeUuid": None,
        "firstConnectedAt": None,
    },
}


def test_v3_user() -> None:
    """A 3.x user object maps to a PanelUser with its numeric key, status, reset strategy, UTC
    dates, squads, traffic, device limit and tag."""
    user = user_from_panel(V3_USER)
    assert user.key == "2"
    assert user.status is PanelStatus.ACTIVE
    assert user.traffic_reset is TrafficReset.MONTH
    assert user.expires_at == datetime(2026, 12, 22, 13, 0, 36, tzinfo=UTC)
    assert user.internal_squads == ("6947abca-5fbe-4698-be62-5f5fe47ec073",)
    assert (user.used_traffic_bytes, user.lifetime_used_traffic_bytes) == (5, 6)
    assert user.device_limit == 3
    assert user.tag == "BOT_PLAN_1"
    assert user.created_at == datetime(2026, 11, 22, 13, 0, 36, 608000, tzinfo=UTC)


def test_v2_user_is_keyed_by_uuid() -> None:
    """A user object that carries a uuid (the 2.x line) is keyed by that uuid, not by its numeric
    id."""
    user = user_from_panel({**V3_USER, "uuid": "3b241101-e2bb-4255-8caf-4136c566a962"})
    assert user.key == "3b241101-e2bb-4255-8caf-4136c566a962"


@pytest.mark.parametrize(
    "change",
    [
        {"status": "NOPE"},
        {"trafficLimitStrategy": "YEAR"},
        {"expireAt": None},
        {"username": None},
        {"trafficLimitBytes": "lots"},
    ],
)
def test_unreadable_users(change: dict[str, object]) -> None:
    """A user object with an unknown enum value, a missing required field or a wrong type raises
    MappingError instead of becoming a half-filled PanelUser."""
    with pytest.raises(MappingError):
        user_from_panel({**V3_USER, **change})
    with pytest.raises(MappingError):
        user_from_panel({k: v for k, v in V3_USER.items() if k not in ("id",)})


def test_dates() -> None:
    """Panel timestamps parse to UTC (naive ones read as UTC) and format back as UTC with
    milliseconds and Z; text that is no timestamp raises MappingError."""
    assert parse_dt("2027-01-01T03:00:00+03:00") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_dt("2027-01-01T00:00:00") == datetime(2027, 1, 1, tzinfo=UTC)
    assert (
        format_dt(datetime(2027, 1, 1, 0, 0, 0, 123999, tzinfo=UTC)) == "2027-01-01T00:00:00.123Z"
    )
    tz = timezone(timedelta(hours=3))
    assert format_dt(datetime(2027, 1, 1, 3, tzinfo=tz)) == "2027-01-01T00:00:00.000Z"
    with pytest.raises(MappingError):
        parse_dt("2027-01-01 tomorrow")


def test_stats() -> None:
    """The system stats answer maps to the user total, the users by status, the users online now and
    the nodes online."""
    stats = stats_from_panel(
        {
            "users": {"statusCounts": {"ACTIVE": 2, "DISABLED": 1}, "totalUsers": 3},
            "onlineStats": {"onlineNow": 1},
            "nodes": {"totalOnline": 4},
        }
    )
    assert (stats.users_total, stats.online_now, stats.nodes_online) == (3, 1, 4)
    assert stats.users_by_status == {"ACTIVE": 2, "DISABLED": 1}


def _err(status: int, body: object, **kw: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return translate_error(status, raw, method="GET", path="/users/2", **kw)


def test_error_translation() -> None:
    """Each panel error answer becomes its port error (404 not found, 400 conflict or invalid, 401,
    403, 5xx and 429 unavailable) keeping the vendor code, message, route and Retry-After."""
    biz = {
        "timestamp": "t",
        "path": "/api/users/2",
        "message": "User not found",
        "errorCode": "A025",
    }
    err = _err(404, biz)
    assert isinstance(err, PanelNotFoundError)
    assert (err.vendor_code, err.vendor_message, err.status) == ("A025", "User not found", 404)
    assert "A025" in str(err)
    assert "GET /users/2" in str(err)

    dup = _err(400, {**biz, "message": "User username already exists", "errorCode": "A019"})
    assert isinstance(dup, PanelConflictError)
    assert isinstance(_err(400, {**biz, "errorCode": "A030"}), PanelConflictError)
    validation = _err(
        400,
        {
            "statusCode": 400,
            "message": "Validation failed",
            "errors": [
                {
                    "code": "custom",
                    "path": ["expireAt"],
                    "message": "Expiration date cannot be in the past",
                }
            ],
        },
    )
    assert isinstance(validation, PanelInvalidError)
    assert "expireAt: Expiration date cannot be in the past" in str(validation)
    assert isinstance(
        _err(401, {"message": "Unauthorized", "statusCode": 401}), PanelUnauthorizedError
    )
    assert isinstance(_err(403, {"message": "Forbidden resource"}), PanelForbiddenError)
    server = _err(500, {**biz, "message": "Update user error", "errorCode": "A039"})
    assert isinstance(server, PanelUnavailableError)
    assert server.vendor_code == "A039"
    proxy = _err(502, b"<html>Bad Gateway</html>")
    assert isinstance(proxy, PanelUnavailableError)
    assert proxy.vendor_code is None
    limited = _err(429, {"message": "ThrottlerException"}, retry_after="2")
    assert isinstance(limited, PanelRateLimitedError)
    assert limited.retry_after == 2.0
