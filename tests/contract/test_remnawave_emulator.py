"""The emulator's version-dependent behaviour and its knobs, over raw HTTP.

(Its 3.3.2 behaviour is checked against the real panel's recordings in
``test_remnawave_captures.py``; this file covers what the recordings cannot: the older
lines, the fault knobs and the test helpers.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from vpnshop.testing.remnawave import ManualClock, RemnawaveEmulator

HEADERS = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
FUTURE = "2030-01-01T00:00:00.000Z"


class Client:
    def __init__(self, emu: RemnawaveEmulator, http: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.http = http

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        h = dict(HEADERS if headers is None else headers)
        if auth:
            h["Authorization"] = f"Bearer {self.emu.token}"
        async with self.http.request(
            method, self.emu.base_url + "/api" + path, json=body, headers=h
        ) as resp:
            raw = await resp.read()
            if not raw:
                return resp.status, None
            if resp.content_type != "application/json":
                return resp.status, raw.decode()
            return resp.status, json.loads(raw)


async def _client(version: str, **kw: Any) -> AsyncIterator[Client]:
    async with RemnawaveEmulator(version, **kw) as emu, aiohttp.ClientSession() as http:
        yield Client(emu, http)


@pytest.fixture
async def v3() -> AsyncIterator[Client]:
    async for c in _client("3.3.2"):
        yield c


@pytest.fixture
async def v2() -> AsyncIterator[Client]:
    async for c in _client("2.5.0"):
        yield c


async def test_metadata_only_from_2_8() -> None:
    """GET /system/metadata answers with the version from 2.8 on and the panel's 404 before."""
    for version, status in (("3.3.2", 200), ("2.8.1", 200), ("2.7.4", 404), ("2.3.0", 404)):
        async for call in _client(version):
            code, body = await call("GET", "/system/metadata")
            assert code == status
            if status == 200:
                assert body["response"]["version"] == version
            else:
                assert body == {
                    "message": "Cannot GET /api/system/metadata",
                    "error": "Not Found",
                    "statusCode": 404,
                }


async def test_3x_shapes(v3: Client) -> None:
    """On 3.x users are keyed by numeric id without uuid, the 2.x-only routes are gone, stream and
    extend exist, and DELETE answers 204 with no body."""
    code, created = await v3("POST", "/users", {"username": "abc", "expireAt": FUTURE})
    assert code == 201
    user = created["response"]
    assert "uuid" not in user and isinstance(user["id"], int)
    assert set(user["userTraffic"]) == {
        "usedTrafficBytes", "lifetimeUsedTrafficBytes", "onlineAt", "lastConnectedNodeUuid",
        "firstConnectedAt",
    }  # fmt: skip
    assert (await v3("GET", "/users/by-telegram-id/1"))[0] == 404  # removed in 3.0
    assert (await v3("GET", "/users/by-id/1"))[0] == 404
    code, body = await v3("GET", "/users/stream?telegramId=5")
    assert (code, body["response"]) == (200, {"users": [], "nextCursor": None, "hasMore": False})
    code, body = await v3("POST", f"/users/{user['id']}/actions/extend", {"days": 2})
    assert code == 200
    code, body = await v3("DELETE", f"/users/{user['id']}")
    assert (code, body) == (204, None)


async def test_2x_shapes(v2: Client) -> None:
    """On 2.x users are keyed by uuid, by-id and by-telegram-id exist, validation errors are zod v3
    issues, 3.x-only routes are missing, and DELETE answers isDeleted, then A025."""
    code, created = await v2("POST", "/users", {"username": "abc", "expireAt": FUTURE})
    assert code == 201
    user = created["response"]
    assert "uuid" in user and "id" in user
    assert "subLastUserAgent" in user  # 2.3-2.6
    assert (await v2("GET", f"/users/{user['uuid']}"))[0] == 200
    assert (await v2("GET", f"/users/by-id/{user['id']}"))[0] == 200
    code, body = await v2("GET", "/users/1")
    assert code == 400
    assert body["errors"][0]["code"] == "invalid_string"  # zod v3
    assert (await v2("GET", "/users/by-telegram-id/5")) == (200, {"response": []})
    assert (await v2("GET", "/users/stream"))[0] == 400  # no stream route: "stream" is no uuid
    assert (await v2("POST", f"/users/{user['uuid']}/actions/extend", {"days": 1}))[0] == 404
    code, body = await v2(
        "POST", "/users", {"username": "q", "expireAt": FUTURE, "trafficLimitStrategy": "YEAR"}
    )
    assert code == 400
    assert [i["code"] for i in body["errors"]] == ["too_small", "invalid_enum_value"]
    assert body["errors"][1]["options"] == ["NO_RESET", "DAY", "WEEK", "MONTH"]
    code, body = await v2("PATCH", "/users", {"status": "DISABLED"})
    assert body["errors"][0]["message"] == "At least one of username, uuid must be provided"
    code, body = await v2("DELETE", f"/users/{user['uuid']}")
    assert (code, body) == (200, {"response": {"isDeleted": True}})
    code, body = await v2("DELETE", f"/users/{user['uuid']}")
    assert code == 404
    assert body["errorCode"] == "A025"


async def test_2_0_user_shape() -> None:
    """A 2.0-2.2 panel renders users without id and userTraffic, with top-level traffic,
    lastConnectedNode and happ."""
    async for call in _client("2.1.0"):
        _code, created = await call("POST", "/users", {"username": "abc", "expireAt": FUTURE})
        user = created["response"]
        assert "id" not in user and "userTraffic" not in user
        assert {"usedTrafficBytes", "lastConnectedNode", "happ"} <= set(user)


async def test_month_rolling_from_2_7() -> None:
    """The MONTH_ROLLING traffic strategy is refused before 2.7 and accepted from 2.7 on."""
    body = {"username": "abc", "expireAt": FUTURE, "trafficLimitStrategy": "MONTH_ROLLING"}
    for version, status in (("2.6.0", 400), ("2.7.0", 201), ("3.3.2", 201)):
        async for call in _client(version):
            assert (await call("POST", "/users", body))[0] == status


async def test_auth_scopes_and_public_routes() -> None:
    """Without a token the answer is 401, a token without the route's scope gets 403, a token with
    it passes, and the subscription info route is public."""
    async for call in _client("3.3.2", token_scopes=["users:read"]):
        assert await call("GET", "/users", auth=False) == (
            401,
            {"message": "Unauthorized", "statusCode": 401},
        )
        assert (await call("GET", "/users"))[0] == 200
        code, body = await call("POST", "/users", {"username": "abc", "expireAt": FUTURE})
        assert (code, body["message"]) == (403, "Forbidden resource")
        call.emu.add_token("writer", ["users:write", "users:read"])
        code, _ = await call(
            "POST",
            "/users",
            {"username": "abc", "expireAt": FUTURE},
            headers={**HEADERS, "Authorization": "Bearer writer"},
            auth=False,
        )
        assert code == 201
        short = call.emu.users()[0]["shortUuid"]
        assert (await call("GET", f"/sub/{short}/info", auth=False))[0] == 200


async def test_scopes_do_not_exist_before_2_8() -> None:
    """Before 2.8 a token's scopes are ignored: a read-only token may create users."""
    async for call in _client("2.7.4", token_scopes=["users:read"]):
        assert (await call("POST", "/users", {"username": "abc", "expireAt": FUTURE}))[0] == 201


async def test_missing_forwarded_headers_drop_the_connection(v3: Client) -> None:
    """Without both X-Forwarded-For and X-Forwarded-Proto: https the panel closes the connection
    with no answer."""
    for headers in ({}, {"X-Forwarded-For": "1.2.3.4"}, {"X-Forwarded-Proto": "https"}):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await v3("GET", "/system/stats", headers=headers)
    assert (await v3("GET", "/system/stats"))[0] == 200


async def test_ids_are_used_up_by_failed_inserts() -> None:
    """A create that fails past validation still uses up an id, a duplicate username answers A018
    (local build) or A019 (stock), and a validation error uses none."""
    async for call in _client("3.3.2", duplicate_username_code="A018"):
        first = (await call("POST", "/users", {"username": "abc", "expireAt": FUTURE}))[1]
        code, dup = await call("POST", "/users", {"username": "abc", "expireAt": FUTURE})
        assert (code, dup["errorCode"], dup["message"]) == (500, "A018", "Failed to create user")
        bad = await call("POST", "/users", {"username": "a b", "expireAt": FUTURE})
        assert bad[0] == 400  # validation: no insert, no id
        second = (await call("POST", "/users", {"username": "abd", "expireAt": FUTURE}))[1]
        assert second["response"]["id"] == first["response"]["id"] + 2
    async for call in _client("3.3.2"):
        await call("POST", "/users", {"username": "abc", "expireAt": FUTURE})
        code, dup = await call("POST", "/users", {"username": "abc", "expireAt": FUTURE})
        assert (code, dup["errorCode"]) == (400, "A019")


async def test_enable_disable_revoke_and_expiry_rules(v3: Client) -> None:
    """Enabling an enabled or disabling a disabled user is refused, PATCH accepts only ACTIVE or
    DISABLED and no past expiry, and a revoke gives a new short uuid so the old subscription page
    is gone."""
    user = (await v3("POST", "/users", {"username": "abc", "expireAt": FUTURE}))[1]["response"]
    uid = user["id"]
    assert (await v3("POST", f"/users/{uid}/actions/enable"))[1]["errorCode"] == "A030"
    assert (await v3("POST", f"/users/{uid}/actions/disable"))[0] == 200
    assert (await v3("POST", f"/users/{uid}/actions/disable"))[1]["errorCode"] == "A029"
    code, body = await v3("PATCH", "/users", {"id": uid, "status": "EXPIRED"})
    assert (code, body["errors"][0]["values"]) == (400, ["ACTIVE", "DISABLED"])
    code, body = await v3("PATCH", "/users", {"id": uid, "expireAt": "2020-01-01T00:00:00Z"})
    assert body["errors"][0]["message"] == "Expiration date cannot be in the past"
    revoked = (await v3("POST", f"/users/{uid}/actions/revoke"))[1]["response"]
    assert revoked["shortUuid"] != user["shortUuid"]
    assert (
        revoked["subscriptionUrl"] == f"https://panel.example.test/api/sub/{revoked['shortUuid']}"
    )
    assert revoked["subRevokedAt"] is not None
    assert (await v3("GET", f"/sub/{user['shortUuid']}/info"))[1]["errorCode"] == "A025"


async def test_the_expiry_scheduler_ticks_every_30_seconds() -> None:
    """A user whose expiry passed is expired only at the next :00 or :30 tick (emitting
    user.expired), and a future expiry set by PATCH reactivates it."""
    clock = ManualClock(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC))
    async for call in _client("3.3.2", clock=clock):
        body = {"username": "abc", "expireAt": "2026-01-01T12:00:20.000Z"}
        uid = (await call("POST", "/users", body))[1]["response"]["id"]
        clock.set(datetime(2026, 1, 1, 12, 0, 25, tzinfo=UTC))  # expired, no tick yet
        assert call.emu.user(uid)["status"] == "ACTIVE"
        clock.set(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
        assert (await call("GET", f"/users/{uid}"))[1]["response"]["status"] == "EXPIRED"
        assert call.emu.events() == ["user.created", "user.expired"]
        # A future expiry reactivates an EXPIRED user.
        _code, body = await call("PATCH", "/users", {"id": uid, "expireAt": FUTURE})
        assert body["response"]["status"] == "ACTIVE"


async def test_fault_knobs(v3: Client) -> None:
    """Each fault knob (fail with status, times, method and Retry-After; down; drop_connections;
    latency; hang; error_rate) changes the answers as documented until cleared."""
    emu = v3.emu
    emu.fail(r"/system/stats", 429, times=1, retry_after=3)
    code, body = await v3("GET", "/system/stats")
    assert (code, body["statusCode"]) == (429, 429)
    assert (await v3("GET", "/system/stats"))[0] == 200
    emu.fail(r"/users", 503, method="POST", times=None, error_code="A001", message="db down")
    code, body = await v3("POST", "/users", {"username": "abc", "expireAt": FUTURE})
    assert (code, body["errorCode"], body["message"]) == (503, "A001", "db down")
    emu.clear_faults()
    emu.down = True
    assert await v3("GET", "/system/stats") == (503, "Service Unavailable")
    emu.down = False
    emu.drop_connections = True
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await v3("GET", "/system/stats")
    emu.drop_connections = False
    emu.latency = 0.2
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await v3("GET", "/system/stats")
    emu.latency = 0
    emu.hang = True
    pending = asyncio.ensure_future(v3("GET", "/system/stats"))
    await asyncio.sleep(0.1)
    assert not pending.done()
    emu.hang = False
    assert (await pending)[0] == 200
    emu.error_rate = 1.0
    assert (await v3("GET", "/system/stats"))[0] == 500
    emu.error_rate = 0.0


async def test_helpers(v3: Client) -> None:
    """The test helpers add users, set traffic (LIMITED at the limit), add devices (refusing
    duplicates), move expiry, and run the expiry job, emitting the panel's events."""
    emu = v3.emu
    user = emu.add_user("manual", tag="X", telegram_id=1, traffic_limit_bytes=100)
    uid = user["id"]
    assert emu.user("manual")["id"] == uid
    emu.set_traffic_used(uid, 100)
    assert emu.user(uid)["status"] == "LIMITED"
    emu.add_hwid_device(uid, "ABCDEFGHIJ12", platform="iOS")
    with pytest.raises(ValueError, match="A098"):
        emu.add_hwid_device(uid, "ABCDEFGHIJ12")
    _code, body = await v3("GET", f"/hwid/devices/{uid}")
    assert body["response"]["total"] == 1
    assert body["response"]["devices"][0]["userId"] == uid
    before = emu.user(uid)["expireAt"]
    emu.advance_expiry(uid, timedelta(days=1))
    assert emu.user(uid)["expireAt"] != before
    emu.set_expire_at(uid, datetime.now(UTC) - timedelta(days=1))
    emu.expire_due_users()  # LIMITED users are not expired by the job
    assert emu.user(uid)["status"] == "LIMITED"
    assert emu.events() == ["user.limited", "user_hwid_devices.added"]


async def test_webhook_payload_shape_follows_the_version() -> None:
    """A webhook payload has the keys of its version (scope from 2.5, meta from 2.4), a timestamp
    header equal to its timestamp, and the compact JSON body that was signed."""
    for version, keys in (
        ("3.3.2", ["scope", "event", "timestamp", "data", "meta"]),
        ("2.5.0", ["scope", "event", "timestamp", "data", "meta"]),
        ("2.4.0", ["event", "timestamp", "data", "meta"]),
        ("2.3.0", ["event", "timestamp", "data"]),
    ):
        async with RemnawaveEmulator(version, webhook_secret="s" * 32) as emu:
            emu.add_user("abc", emit=True)
            sent = emu.webhooks[0]
            assert list(sent.payload) == keys
            assert sent.headers["X-Remnawave-Timestamp"] == sent.payload["timestamp"]
            assert sent.body == json.dumps(sent.payload, separators=(",", ":")).encode()
