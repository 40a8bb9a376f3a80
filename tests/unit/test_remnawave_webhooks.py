"""Verifying and parsing Remnawave webhook deliveries (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vpnshop.adapters.remnawave.errors import RemnawaveConfigError
from vpnshop.adapters.remnawave.webhooks import (
    RemnawaveWebhookVerifier,
    parse_event,
    sign,
)
from vpnshop.domain.errors import DomainError
from vpnshop.domain.panel import PanelStatus
from vpnshop.domain.panel_events import (
    MalformedWebhookError,
    PanelEventType,
    PanelWebhookError,
    ReplayedWebhookError,
    WebhookSignatureError,
    WebhookTimestampError,
)

# Recordings of a real Remnawave 3.3.2 panel, kept with the tests (tests/fixtures).
CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "remnawave-captures"
CAPTURE_FILES = ["webhooks_v3.3.2.jsonl", "webhooks_v3.3.2_lifecycle.jsonl"]
# The throwaway capture instance's secret, published in the captures' README.
CAPTURE_SECRET = "upfUJbVe6CGw6aHfQhHmGFipVCEPITfSrML4K0Nd7UZkUO1ceNKUWNFCXZ9HZQTE"
SECRET = "a" * 32 + "B" * 32
T0 = datetime(2026, 11, 22, 13, 0, 36, 626000, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.value = now

    def now(self) -> datetime:
        return self.value


def _user(**overrides: Any) -> dict[str, Any]:
    user = {
        "id": 2,
        "shortUuid": "cvXTDzKekDgmnV_5",
        "username": "vs_2",
        "status": "ACTIVE",
        "trafficLimitBytes": 10737418240,
        "trafficLimitStrategy": "MONTH",
        "expireAt": "2026-12-22T13:00:36.000Z",
        "telegramId": 123456789,
        "email": None,
        "description": None,
        "tag": "VPNSHOP",
        "hwidDeviceLimit": 3,
        "externalSquadUuid": None,
        "lastTriggeredThreshold": 0,
        "subRevokedAt": None,
        "lastTrafficResetAt": None,
        "createdAt": "2026-11-22T13:00:36.608Z",
        "updatedAt": "2026-11-22T13:00:36.608Z",
        "subscriptionUrl": "https://panel.example.test/api/sub/cvXTDzKekDgmnV_5",
        "activeInternalSquads": [{"uuid": "6947abca-5fbe-4698-be62-5f5fe47ec073", "name": "D"}],
        "userTraffic": {
            "usedTrafficBytes": 1234,
            "lifetimeUsedTrafficBytes": 5678,
            "onlineAt": "2026-11-22T12:59:00.000Z",
            "lastConnectedNodeUuid": None,
            "firstConnectedAt": "2026-11-20T10:00:00.000Z",
        },
    }
    user.update(overrides)
    return user


def _delivery(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {
        "X-Remnawave-Signature": sign(secret, body),
        "X-Remnawave-Timestamp": payload.get("timestamp", ""),
        "Content-Type": "application/json",
    }


def _payload(event: str, data: Any = None, meta: Any = None, **extra: Any) -> dict[str, Any]:
    payload = {
        "scope": event.split(".")[0],
        "event": event,
        "timestamp": "2026-11-22T13:00:36.626Z",
        "data": _user() if data is None else data,
        "meta": meta,
    }
    payload.update(extra)
    return payload


def _verifier(now: datetime = T0, **kw: Any) -> RemnawaveWebhookVerifier:
    return RemnawaveWebhookVerifier(SECRET, clock=Clock(now), **kw)


# -- the captured deliveries -------------------------------------------------------------
def _captured() -> list[dict[str, Any]]:
    out = []
    for name in CAPTURE_FILES:
        for line in (CAPTURES / name).read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def test_every_captured_delivery_verifies_and_parses() -> None:
    """Each of the 124 deliveries captured from a real panel verifies on its raw bytes and parses to
    its event, user and device, with the signature as dedupe key; other scopes are ignored."""
    deliveries = _captured()
    assert len(deliveries) == 16 + 108
    clock = Clock(T0)
    verifier = RemnawaveWebhookVerifier(CAPTURE_SECRET, clock=clock)
    seen_types: set[PanelEventType] = set()
    for record in deliveries:
        body = record["body"].encode("utf-8")  # the raw bytes exactly as sent
        headers = record["headers"]
        clock.value = datetime.fromisoformat(
            headers["X-Remnawave-Timestamp"].replace("Z", "+00:00")
        ) + timedelta(milliseconds=40)
        event = verifier.parse(body, headers)
        payload = json.loads(body)
        assert event.name == payload["event"]
        assert event.dedupe_key == "remnawave:" + headers["X-Remnawave-Signature"]
        seen_types.add(event.type)
        if payload["scope"] in ("user", "user_hwid_devices"):
            assert event.type.value == payload["event"]
            data = (
                payload["data"]["user"]
                if payload["scope"] == "user_hwid_devices"
                else payload["data"]
            )
            assert event.user is not None
            assert event.user.key == str(data["id"])
            assert event.user.username == data["username"]
            assert event.user.status is PanelStatus(data["status"])
            assert event.user.used_traffic_bytes == data["userTraffic"]["usedTrafficBytes"]
            assert event.user.telegram_id == data["telegramId"]
        else:
            assert event.ignored
            assert event.user is None
        if payload["scope"] == "user_hwid_devices":
            assert event.device is not None
            assert event.device.hwid == payload["data"]["hwidUserDevice"]["hwid"]
    assert seen_types >= {
        PanelEventType.IGNORED,
        PanelEventType.USER_CREATED,
        PanelEventType.USER_MODIFIED,
        PanelEventType.USER_DISABLED,
        PanelEventType.USER_ENABLED,
        PanelEventType.USER_TRAFFIC_RESET,
        PanelEventType.USER_REVOKED,
        PanelEventType.USER_DELETED,
        PanelEventType.USER_EXPIRED,
        PanelEventType.DEVICE_ADDED,
        PanelEventType.DEVICE_DELETED,
    }


def test_captured_deliveries_fail_when_reserialised_or_wrong_secret() -> None:
    """A captured delivery fails the signature check when its JSON is re-serialised or when checked
    with another secret."""
    record = _captured()[3]
    headers = record["headers"]
    now = datetime.fromisoformat(headers["X-Remnawave-Timestamp"].replace("Z", "+00:00"))
    body = json.dumps(json.loads(record["body"])).encode()  # Python's default separators
    with pytest.raises(WebhookSignatureError):
        RemnawaveWebhookVerifier(CAPTURE_SECRET, clock=Clock(now)).verify(body, headers)
    with pytest.raises(WebhookSignatureError):
        RemnawaveWebhookVerifier(SECRET, clock=Clock(now)).verify(record["body"].encode(), headers)


# -- signature, window, replay -------------------------------------------------------------
def test_a_valid_delivery_is_accepted() -> None:
    """A correctly signed, fresh delivery is accepted with its signature, timestamp and signature-
    based dedupe key."""
    body, headers = _delivery(_payload("user.created"))
    delivery = _verifier().verify(body, headers)
    assert delivery.signature == headers["X-Remnawave-Signature"]
    assert delivery.timestamp == T0
    assert delivery.dedupe_key == "remnawave:" + delivery.signature


def test_headers_are_case_insensitive() -> None:
    """The signature and timestamp headers are found whatever their case."""
    body, headers = _delivery(_payload("user.created"))
    lowered = {k.lower(): v for k, v in headers.items()}
    assert _verifier().verify(body, lowered).timestamp == T0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body, headers: (body + b" ", headers),
        lambda body, headers: (body, {**headers, "X-Remnawave-Signature": "0" * 64}),
        lambda body, headers: (body, {**headers, "X-Remnawave-Signature": "not hex"}),
        lambda body, headers: (body, {k: v for k, v in headers.items() if "Signature" not in k}),
        lambda body, headers: (body, {**headers, "X-Remnawave-Signature": ""}),
    ],
)
def test_bad_signatures_are_refused(mutate: Any) -> None:
    """A changed body or a wrong, non-hex, empty or missing signature raises WebhookSignatureError,
    a DomainError with code panel_webhook_signature."""
    body, headers = mutate(*_delivery(_payload("user.created")))
    with pytest.raises(WebhookSignatureError) as caught:
        _verifier().verify(body, headers)
    assert isinstance(caught.value, DomainError)
    assert caught.value.code == "panel_webhook_signature"


def test_uppercase_hex_signature_is_accepted() -> None:
    """A signature in upper-case hex is accepted like the lower-case one."""
    body, headers = _delivery(_payload("user.created"))
    headers["X-Remnawave-Signature"] = headers["X-Remnawave-Signature"].upper()
    assert _verifier().verify(body, headers)


@pytest.mark.parametrize("offset", [timedelta(minutes=6), timedelta(minutes=-6), timedelta(days=2)])
def test_timestamps_outside_the_window_are_refused(offset: timedelta) -> None:
    """A delivery more than five minutes from now, in either direction, raises
    WebhookTimestampError, while one just inside the window is accepted."""
    body, headers = _delivery(_payload("user.created"))
    with pytest.raises(WebhookTimestampError):
        _verifier(T0 + offset).verify(body, headers)
    # Just inside the window, in the same direction.
    inside = timedelta(minutes=4, seconds=59) * (1 if offset > timedelta(0) else -1)
    assert _verifier(T0 + inside).verify(body, headers)


def test_the_window_is_configurable() -> None:
    """A wider configured window accepts a delivery older than the default five minutes."""
    body, headers = _delivery(_payload("user.created"))
    verifier = _verifier(T0 + timedelta(minutes=20), window=timedelta(minutes=30))
    assert verifier.verify(body, headers)


def test_missing_or_unreadable_or_forged_timestamp_is_refused() -> None:
    """A missing or unreadable timestamp header, or one that differs from the signed payload's
    timestamp, raises WebhookTimestampError."""
    body, headers = _delivery(_payload("user.created"))
    with pytest.raises(WebhookTimestampError):
        _verifier().verify(body, {k: v for k, v in headers.items() if "Timestamp" not in k})
    with pytest.raises(WebhookTimestampError):
        _verifier().verify(body, {**headers, "X-Remnawave-Timestamp": "yesterday"})
    # An old signed body with a fresh (unsigned) header: the signed timestamp wins.
    fresh = (T0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with pytest.raises(WebhookTimestampError, match="differs"):
        _verifier(T0 + timedelta(hours=1)).verify(body, {**headers, "X-Remnawave-Timestamp": fresh})


def test_a_replay_raises_a_distinct_error() -> None:
    """The same delivery verified twice raises ReplayedWebhookError carrying its dedupe key, while a
    different delivery still passes."""
    verifier = _verifier()
    body, headers = _delivery(_payload("user.created"))
    first = verifier.verify(body, headers)
    with pytest.raises(ReplayedWebhookError) as caught:
        verifier.verify(body, headers)
    assert caught.value.dedupe_key == first.dedupe_key
    assert caught.value.code == "panel_webhook_replayed"
    assert verifier.seen(first.dedupe_key)
    # A different delivery is fine.
    other_body, other_headers = _delivery(_payload("user.modified"))
    assert verifier.verify(other_body, other_headers)


def test_forget_lets_a_retry_through() -> None:
    """After forget(), the same delivery verifies again (a retry after a failed handling)."""
    verifier = _verifier()
    body, headers = _delivery(_payload("user.created"))
    delivery = verifier.verify(body, headers)
    verifier.forget(delivery.dedupe_key)
    assert verifier.verify(body, headers).dedupe_key == delivery.dedupe_key


def test_replay_memory_is_bounded_and_expires() -> None:
    """The verifier remembers at most max_remembered deliveries, and forgets those older than the
    timestamp window."""
    clock = Clock(T0)
    verifier = RemnawaveWebhookVerifier(SECRET, clock=clock, max_remembered=3)
    keys = []
    for i in range(5):
        body, headers = _delivery(_payload("user.modified", data=_user(id=100 + i)))
        keys.append(verifier.verify(body, headers).dedupe_key)
    assert [verifier.seen(k) for k in keys] == [False, False, True, True, True]
    clock.value = T0 + timedelta(minutes=4, seconds=59)
    body, headers = _delivery(
        _payload(
            "user.created", timestamp=(clock.value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        )
    )
    verifier.verify(body, headers)
    clock.value = T0 + timedelta(minutes=10)
    body, headers = _delivery(
        _payload(
            "user.deleted", timestamp=(clock.value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        )
    )
    verifier.verify(body, headers)
    assert not any(verifier.seen(k) for k in keys)


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_the_verifier_needs_a_secret(secret: str | None) -> None:
    """A missing, empty or blank secret raises RemnawaveConfigError naming the secret."""
    with pytest.raises(RemnawaveConfigError, match="secret"):
        RemnawaveWebhookVerifier(secret)


def test_the_secret_is_not_in_repr() -> None:
    """The secret never appears in the verifier's repr."""
    assert SECRET not in repr(_verifier())


def test_a_signed_but_malformed_body_is_refused_and_forgotten() -> None:
    """A signed body that is not a JSON object, or an event whose data cannot be read, raises
    MalformedWebhookError and is not remembered as seen."""
    verifier = _verifier()
    for raw in (b"not json", b"[1,2]"):
        headers = {
            "X-Remnawave-Signature": sign(SECRET, raw),
            "X-Remnawave-Timestamp": "2026-11-22T13:00:36.626Z",
        }
        with pytest.raises(MalformedWebhookError):
            verifier.verify(raw, headers)
    body, headers = _delivery(_payload("user.created", data={"nope": 1}))
    with pytest.raises(MalformedWebhookError):
        verifier.parse(body, headers)
    assert not verifier.seen("remnawave:" + headers["X-Remnawave-Signature"])
    assert issubclass(MalformedWebhookError, PanelWebhookError)


# -- parsing ----------------------------------------------------------------------------------
def _parse(payload: dict[str, Any]) -> Any:
    return parse_event(payload, dedupe_key="k")


@pytest.mark.parametrize("hours", [-72, -48, -24, 24])
def test_user_expiration_meta(hours: int) -> None:
    """user.expiration carries its meta hours as expiration_hours and the matching expires_in, with
    the user."""
    event = _parse(_payload("user.expiration", meta={"expiration": hours}))
    assert event.type is PanelEventType.USER_EXPIRATION
    assert event.expiration_hours == hours
    assert event.expires_in == timedelta(hours=-hours)
    assert event.user.key == "2"


@pytest.mark.parametrize(
    ("name", "hours"),
    [
        ("user.expires_in_72_hours", -72),
        ("user.expires_in_48_hours", -48),
        ("user.expires_in_24_hours", -24),
        ("user.expired_24_hours_ago", 24),
    ],
)
def test_legacy_expiry_warnings_map_to_the_same_event(name: str, hours: int) -> None:
    """The pre-2.8 expiry warnings (expires_in_72/48/24_hours, expired_24_hours_ago) parse to
    USER_EXPIRATION with the same hours as 2.8's meta."""
    # A 2.3 panel: no scope (before 2.5), no meta (before 2.4), uuid keys.
    data = _user(
        uuid="3b241101-e2bb-4255-8caf-4136c566a962", subLastUserAgent=None, subLastOpenedAt=None
    )
    payload = {"event": name, "timestamp": "2026-11-22T13:00:36.626Z", "data": data}
    event = _parse(payload)
    assert event.type is PanelEventType.USER_EXPIRATION
    assert event.name == name
    assert event.scope == "user"
    assert event.expiration_hours == hours
    assert event.user.key == "3b241101-e2bb-4255-8caf-4136c566a962"


def test_user_expiration_without_meta_is_malformed() -> None:
    """user.expiration without its meta raises MalformedWebhookError."""
    with pytest.raises(MalformedWebhookError):
        _parse(_payload("user.expiration", meta=None))


@pytest.mark.parametrize(
    "name",
    [
        "user.created",
        "user.modified",
        "user.deleted",
        "user.revoked",
        "user.disabled",
        "user.enabled",
        "user.limited",
        "user.expired",
        "user.traffic_reset",
        "user.first_connected",
        "user.bandwidth_usage_threshold_reached",
    ],
)
def test_user_events(name: str) -> None:
    """Each user event parses to its type with the user's key, username, traffic, online time,
    telegram id, squads and time, and a threshold only for the bandwidth event."""
    event = _parse(_payload(name, data=_user(lastTriggeredThreshold=80)))
    assert event.type.value == name
    user = event.user
    assert user.key == "2"
    assert user.username == "vs_2"
    assert user.used_traffic_bytes == 1234
    assert user.lifetime_used_traffic_bytes == 5678
    assert user.online_at == datetime(2026, 11, 22, 12, 59, tzinfo=UTC)
    assert user.telegram_id == 123456789
    assert user.internal_squads == ("6947abca-5fbe-4698-be62-5f5fe47ec073",)
    assert event.occurred_at == T0
    if name == "user.bandwidth_usage_threshold_reached":
        assert event.threshold_percent == 80
    else:
        assert event.threshold_percent is None


def test_not_connected() -> None:
    """user.not_connected parses with its notConnectedAfterHours meta."""
    event = _parse(_payload("user.not_connected", meta={"notConnectedAfterHours": 48}))
    assert event.type is PanelEventType.USER_NOT_CONNECTED
    assert event.not_connected_hours == 48


@pytest.mark.parametrize("name", ["user_hwid_devices.added", "user_hwid_devices.deleted"])
def test_device_events(name: str) -> None:
    """HWID device events parse to their type with the device's hwid and platform and the user."""
    device = {
        "hwid": "ABCDEF123456",
        "userId": 2,
        "platform": "Android",
        "osVersion": "14",
        "deviceModel": "Pixel",
        "userAgent": "Happ/1.0",
        "requestIp": None,
        "createdAt": "2026-11-22T13:00:36.980Z",
        "updatedAt": "2026-11-22T13:00:36.980Z",
    }
    payload = {
        "scope": "user_hwid_devices",
        "event": name,
        "timestamp": "2026-11-22T13:00:36.982Z",
        "data": {"hwidUserDevice": device, "user": _user()},
    }
    event = _parse(payload)
    assert event.type.value == name
    assert event.device.hwid == "ABCDEF123456"
    assert event.device.platform == "Android"
    assert event.user.key == "2"


def test_2_0_user_shape_is_read() -> None:
    """A 2.0-2.2 user object (uuid key, top-level traffic, no id or userTraffic) is read into the
    same PanelUser."""
    data = _user(
        uuid="3b241101-e2bb-4255-8caf-4136c566a962",
        usedTrafficBytes=99,
        lifetimeUsedTrafficBytes=100,
        onlineAt=None,
        firstConnectedAt=None,
    )
    del data["id"], data["userTraffic"]
    event = _parse(_payload("user.limited", data=data))
    assert event.user.used_traffic_bytes == 99
    assert event.user.key == "3b241101-e2bb-4255-8caf-4136c566a962"


@pytest.mark.parametrize(
    "payload",
    [
        {
            "scope": "node",
            "event": "node.connection_lost",
            "timestamp": "2026-11-22T13:00:36.626Z",
            "data": {"uuid": "x"},
        },
        {
            "scope": "service",
            "event": "service.panel_started",
            "timestamp": "2026-11-22T13:00:36.626Z",
            "data": {"panelVersion": "1.1.1"},
        },
        {
            "scope": "user",
            "event": "user.something_new",
            "timestamp": "2026-11-22T13:00:36.626Z",
            "data": {},
        },
        {
            "scope": "crm",
            "event": "crm.infra_billing_node_payment_in_7_days",
            "timestamp": "2026-11-22T13:00:36.626Z",
            "data": {},
        },
    ],
)
def test_unknown_events_are_ignored(payload: dict[str, Any]) -> None:
    """Events of other scopes or unknown names parse as IGNORED, keeping their name."""
    event = _parse(payload)
    assert event.ignored
    assert event.type is PanelEventType.IGNORED
    assert event.name == payload["event"]


@pytest.mark.parametrize(
    "payload",
    [
        {"timestamp": "2026-11-22T13:00:36.626Z", "data": {}},
        {"event": "", "timestamp": "2026-11-22T13:00:36.626Z"},
        {"event": "user.created", "timestamp": "soon", "data": _user()},
        {"event": "user.created", "timestamp": "2026-11-22T13:00:36.626Z", "data": None},
        {
            "event": "user.created",
            "timestamp": "2026-11-22T13:00:36.626Z",
            "data": _user(status="WEIRD"),
        },
        {
            "event": "user_hwid_devices.added",
            "timestamp": "2026-11-22T13:00:36.626Z",
            "data": {"user": _user()},
        },
    ],
)
def test_malformed_payloads(payload: dict[str, Any]) -> None:
    """A payload without event, with an empty event, a bad timestamp, no or unreadable data, or a
    device event without its device raises MalformedWebhookError."""
    with pytest.raises(MalformedWebhookError):
        _parse(payload)
