"""The Remnawave adapter against the panel emulator, on both API lines.

3.3.2 (numeric ids) and 2.8.1 (uuid keys) run every test of the port; 2.5.0, 2.4.0 and
2.3.0 cover version probing and the by-telegram-id "404 A062 means none" rule.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest

from vpnshop.adapters.remnawave import (
    PanelConnectionDroppedError,
    PanelTimeoutError,
    RemnawavePanel,
    RemnawaveSettings,
)
from vpnshop.domain.panel import PanelAccess, PanelStatus
from vpnshop.domain.plan import TrafficReset
from vpnshop.ports.panel import (
    PanelConflictError,
    PanelForbiddenError,
    PanelInvalidError,
    PanelNotFoundError,
    PanelNotOwnedError,
    PanelUnauthorizedError,
    PanelUnavailableError,
    PanelVersionError,
    VpnPanel,
)
from vpnshop.testing.remnawave import RemnawaveEmulator

MAIN_LINES = ["3.3.2", "2.8.1"]
WRITES = ("POST", "PATCH", "DELETE", "PUT")


def settings_for(emu: RemnawaveEmulator, **overrides: Any) -> RemnawaveSettings:
    values: dict[str, Any] = {
        "base_url": emu.base_url,
        "token": emu.token,
        "retry_attempts": 3,
        "retry_initial_wait": 0.001,
        "retry_max_wait": 0.01,
        "timeout": 3.0,
    }
    values.update(overrides)
    return RemnawaveSettings(**values)


@attrs.define
class Env:
    emu: RemnawaveEmulator
    panel: RemnawavePanel

    def write_count(self, since: int = 0) -> int:
        return sum(1 for r in self.emu.requests[since:] if r.method in WRITES)

    def mark(self) -> int:
        return len(self.emu.requests)

    def access(self, sub_id: int = 1, **kw: Any) -> PanelAccess:
        values: dict[str, Any] = {
            "username": self.panel.username_for(sub_id),
            "expires_at": datetime.now(UTC) + timedelta(days=30),
            "internal_squads": (self.emu.default_squad_uuid,),
        }
        values.update(kw)
        return PanelAccess(**values)


@contextlib.asynccontextmanager
async def open_env(version: str, **settings: Any) -> AsyncIterator[Env]:
    emu = RemnawaveEmulator(version)
    await emu.start()
    panel = RemnawavePanel(settings_for(emu, **settings))
    await panel.start()
    try:
        yield Env(emu, panel)
    finally:
        await panel.aclose()
        await emu.close()


@pytest.fixture(params=MAIN_LINES)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with open_env(request.param) as value:
        yield value


# -- the port ------------------------------------------------------------------------------
async def test_adapter_satisfies_the_port(env: Env) -> None:
    """RemnawavePanel satisfies the VpnPanel port and reports a healthy panel."""
    port: VpnPanel = env.panel  # mypy checks the structural match
    assert await port.health()


@pytest.mark.parametrize(
    ("version", "line", "reported"),
    [
        ("3.3.2", "3", "3.3.2"),
        ("3.0.0", "3", "3.0.0"),
        ("2.8.1", "2", "2.8.1"),
        ("2.7.4", "2", None),
        ("2.5.0", "2", None),
        ("2.3.0", "2", None),
    ],
)
async def test_info_detects_the_line(version: str, line: str, reported: str | None) -> None:
    """info() detects the API line of every supported version, and the version itself where the
    panel reports it (2.8 and later)."""
    async with open_env(version) as env:
        info = await env.panel.info()
        assert info.api_line == line
        assert info.version == reported


@pytest.mark.parametrize("version", ["4.0.0", "2.2.0", "2.0.0", "1.6.16"])
async def test_unsupported_versions_are_refused(version: str) -> None:
    """start() refuses a panel older than 2.3 or newer than the 3.x line with PanelVersionError
    naming the supported range."""
    async with RemnawaveEmulator(version) as emu:
        panel = RemnawavePanel(settings_for(emu))
        with pytest.raises(PanelVersionError) as caught:
            await panel.start()
        await panel.aclose()
    text = str(caught.value)
    assert "2.3.0" in text
    assert "4.0.0" in text
    if version == "4.0.0":
        assert "4.0.0 is not supported" in text
    else:
        assert "< 2.3" in text


async def test_fixed_line_is_used_and_checked() -> None:
    """A configured api_line is used without probing, and a panel on the other line is refused at
    start with a message naming api_line."""
    async with RemnawaveEmulator("3.3.2") as emu:
        async with RemnawavePanel(settings_for(emu, api_line="3")) as panel:
            assert (await panel.info()).api_line == "3"
        wrong = RemnawavePanel(settings_for(emu, api_line="2"))
        with pytest.raises(PanelVersionError, match="api_line=2"):
            await wrong.start()
        await wrong.aclose()
    async with (
        RemnawaveEmulator("2.5.0") as emu,
        RemnawavePanel(settings_for(emu, api_line="2")) as panel,
    ):
        info = await panel.info()
        assert info.api_line == "2"
        assert info.version is None
        assert not any(r.path == "/api/users/by-id/1" for r in emu.requests)


# -- apply -----------------------------------------------------------------------------------
async def test_apply_creates_a_matching_user(env: Env) -> None:
    """apply() of a new access creates one panel user with every field of the access, and returns it
    with the panel's key, link and millisecond expiry."""
    ext = env.emu.add_external_squad("EU")
    extra = env.emu.add_squad("Premium")
    expires = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    access = env.access(
        7,
        expires_at=expires,
        traffic_limit_bytes=50 * 1024**3,
        traffic_reset=TrafficReset.MONTH,
        device_limit=3,
        internal_squads=(env.emu.default_squad_uuid, extra),
        external_squad=ext,
        description="plan basic",
        telegram_id=123456789,
        email="u@example.com",
    )
    user = await env.panel.apply(access)
    raw = env.emu.user(user.key)
    assert raw["username"] == "vs_7"
    assert raw["expireAt"] == "2031-05-06T07:08:09.123Z"
    assert raw["status"] == "ACTIVE"
    assert raw["trafficLimitBytes"] == 50 * 1024**3
    assert raw["trafficLimitStrategy"] == "MONTH"
    assert raw["hwidDeviceLimit"] == 3
    assert {s["uuid"] for s in raw["activeInternalSquads"]} == {env.emu.default_squad_uuid, extra}
    assert raw["externalSquadUuid"] == ext
    assert raw["description"] == "plan basic"
    assert raw["tag"] == "VPNSHOP"
    assert raw["telegramId"] == 123456789
    assert raw["email"] == "u@example.com"
    assert user.key == (str(raw["id"]) if env.emu.line3 else raw["uuid"])
    assert user.subscription_url == raw["subscriptionUrl"]
    assert user.expires_at == datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


async def test_apply_is_idempotent(env: Env) -> None:
    """Applying the same access again, with or without its key, writes nothing and returns the same
    user."""
    access = env.access(1, telegram_id=5, device_limit=2, description="d")
    first = await env.panel.apply(access)
    mark = env.mark()
    second = await env.panel.apply(access)
    third = await env.panel.apply(attrs.evolve(access, key=first.key))
    assert env.write_count(mark) == 0
    assert second == first == third
    assert env.emu.events().count("user.created") == 1
    assert "user.modified" not in env.emu.events()


async def test_apply_fresh_creates_with_one_call(env: Env) -> None:
    """A fresh access (no panel user linked yet) creates the user with a single request,
    no lookup first."""
    mark = env.mark()
    user = await env.panel.apply(env.access(1, telegram_id=5, fresh=True))
    assert [(r.method, r.path) for r in env.emu.requests[mark:]] == [("POST", "/api/users")]
    assert user.username == env.panel.username_for(1)


async def test_apply_fresh_adopts_a_user_whose_create_answer_was_lost(env: Env) -> None:
    """A fresh access whose user exists already (an earlier create's answer was lost)
    adopts that user: same key, no second user, nothing written when it matches."""
    access = env.access(1, telegram_id=5, device_limit=2, description="d")
    first = await env.panel.apply(access)
    mark = env.mark()
    again = await env.panel.apply(attrs.evolve(access, fresh=True))
    assert again == first
    assert env.emu.events().count("user.created") == 1
    assert [r.method for r in env.emu.requests[mark:] if r.method in WRITES] == ["POST"]
    assert "user.modified" not in env.emu.events()


async def test_apply_updates_only_what_differs(env: Env) -> None:
    """Applying a changed access sends one PATCH with only the changed fields (never username, tag
    or status) and returns the updated user under the same key."""
    access = env.access(2, telegram_id=5, email="a@example.com")
    user = await env.panel.apply(access)
    mark = env.mark()
    later = datetime.now(UTC) + timedelta(days=90)
    changed = attrs.evolve(
        access,
        key=user.key,
        expires_at=later,
        traffic_limit_bytes=10,
        traffic_reset=TrafficReset.WEEK,
        device_limit=None,
        internal_squads=(),
        telegram_id=None,
        email=None,
        description="new",
    )
    updated = await env.panel.apply(changed)
    patches = [r for r in env.emu.requests[mark:] if r.method == "PATCH"]
    assert len(patches) == 1
    body = json.loads(patches[0].body)
    assert "username" not in body
    assert "tag" not in body
    assert "status" not in body
    assert set(body) - {"id", "uuid"} == {
        "expireAt",
        "trafficLimitBytes",
        "trafficLimitStrategy",
        "activeInternalSquads",
        "telegramId",
        "email",
        "description",
    }
    assert updated.traffic_limit_bytes == 10
    assert updated.traffic_reset is TrafficReset.WEEK
    assert updated.internal_squads == ()
    assert updated.telegram_id is None
    assert updated.email is None
    assert updated.description == "new"
    assert abs(updated.expires_at - later) < timedelta(milliseconds=1)
    assert updated.key == user.key


async def test_apply_disabled_and_enabled_again(env: Env) -> None:
    """An access with enabled=False disables the panel user, and applying it enabled again makes it
    ACTIVE."""
    access = env.access(3)
    user = await env.panel.apply(access)
    disabled = await env.panel.apply(attrs.evolve(access, key=user.key, enabled=False))
    assert disabled.status is PanelStatus.DISABLED
    again = await env.panel.apply(attrs.evolve(access, key=user.key))
    assert again.status is PanelStatus.ACTIVE


def _sent_expiries(env: Env) -> list[datetime]:
    out = []
    for r in env.emu.requests:
        if r.method in ("POST", "PATCH") and r.body:
            body = json.loads(r.body)
            if isinstance(body, dict) and "expireAt" in body:
                out.append(datetime.fromisoformat(body["expireAt"].replace("Z", "+00:00")))
    return out


async def test_expired_access_is_applied_disabled_without_a_past_expiry(env: Env) -> None:
    """An expired access disables the user without sending a past expiry (the panel refuses one),
    idempotently, and a new user created already expired gets a short future expiry."""
    access = env.access(4)
    user = await env.panel.apply(access)
    before = env.emu.user(user.key)["expireAt"]
    past = datetime.now(UTC) - timedelta(days=1)
    mark = env.mark()
    result = await env.panel.apply(attrs.evolve(access, key=user.key, expires_at=past))
    assert result.status is PanelStatus.DISABLED
    assert env.emu.user(user.key)["expireAt"] == before  # the panel keeps its own expiry
    patch = next(json.loads(r.body) for r in env.emu.requests[mark:] if r.method == "PATCH")
    assert "expireAt" not in patch
    # Idempotent as well.
    mark = env.mark()
    await env.panel.apply(attrs.evolve(access, key=user.key, expires_at=past))
    assert env.write_count(mark) == 0
    # Created already expired: DISABLED, with a (short) future expiry.
    created = await env.panel.apply(env.access(5, expires_at=past))
    assert created.status is PanelStatus.DISABLED
    now = datetime.now(UTC)
    assert now < created.expires_at < now + timedelta(minutes=2)
    assert all(sent > now - timedelta(seconds=5) for sent in _sent_expiries(env))


async def test_expired_panel_user_is_reactivated_by_a_renewal(env: Env) -> None:
    """Renewing an access whose panel user the panel expired makes that user ACTIVE again."""
    access = env.access(6)
    user = await env.panel.apply(access)
    env.emu.set_expire_at(user.key, datetime.now(UTC) - timedelta(minutes=1))
    env.emu.expire_due_users()
    assert env.emu.user(user.key)["status"] == "EXPIRED"
    renewed = await env.panel.apply(
        attrs.evolve(access, key=user.key, expires_at=datetime.now(UTC) + timedelta(days=60))
    )
    assert renewed.status is PanelStatus.ACTIVE
    assert env.emu.user(user.key)["status"] == "ACTIVE"


async def test_limited_status_is_left_to_the_panel(env: Env) -> None:
    """A user the panel made LIMITED for traffic stays LIMITED when the unchanged access is applied,
    with no write."""
    access = env.access(8, traffic_limit_bytes=1000)
    user = await env.panel.apply(access)
    env.emu.set_traffic_used(user.key, 1000)
    assert env.emu.user(user.key)["status"] == "LIMITED"
    mark = env.mark()
    again = await env.panel.apply(attrs.evolve(access, key=user.key))
    assert again.status is PanelStatus.LIMITED
    assert env.write_count(mark) == 0
    assert again.used_traffic_bytes == 1000


async def test_month_rolling_needs_2_7() -> None:
    """The MONTH_ROLLING traffic reset is refused before any write on panels older than 2.7 and
    applied from 2.7 on."""
    async with open_env("2.5.0") as env:
        with pytest.raises(PanelInvalidError, match="MONTH_ROLLING"):
            await env.panel.apply(env.access(1, traffic_reset=TrafficReset.MONTH_ROLLING))
        assert env.write_count() == 0
    for version in ("2.7.4", "2.8.1", "3.3.2"):
        async with open_env(version) as env:
            user = await env.panel.apply(env.access(1, traffic_reset=TrafficReset.MONTH_ROLLING))
            assert user.traffic_reset is TrafficReset.MONTH_ROLLING


async def test_invalid_access_is_refused_before_any_write(env: Env) -> None:
    """An access with an invalid username or another shop's tag raises PanelInvalidError before any
    write; the shop's own tag is accepted."""
    with pytest.raises(PanelInvalidError, match="username"):
        await env.panel.apply(env.access(username="bad name"))
    with pytest.raises(PanelInvalidError, match="shop tag"):
        await env.panel.apply(env.access(tag="OTHER"))
    assert env.write_count() == 0
    # The shop's own tag is accepted.
    user = await env.panel.apply(env.access(tag="VPNSHOP"))
    assert user.tag == "VPNSHOP"


async def test_unknown_squad_is_reported_as_invalid(env: Env) -> None:
    """An unknown internal squad is reported as PanelInvalidError naming it, with the panel's A018
    on create and A039 on update."""
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(PanelInvalidError) as caught:
        await env.panel.apply(env.access(9, internal_squads=(missing,)))
    assert caught.value.vendor_code == "A018"
    assert missing in str(caught.value)
    user = await env.panel.apply(env.access(9))
    with pytest.raises(PanelInvalidError) as caught:
        await env.panel.apply(env.access(9, key=user.key, internal_squads=(missing,)))
    assert caught.value.vendor_code == "A039"
    assert caught.value.vendor_message == "Update user error"


# -- ownership ---------------------------------------------------------------------------------
async def test_existing_shop_user_is_adopted(env: Env) -> None:
    """A lost create response: the user exists, carries the shop tag, and is adopted."""
    existing = env.emu.add_user("vs_10", tag="VPNSHOP")
    user = await env.panel.apply(env.access(10))
    assert user.username == "vs_10"
    assert env.emu.events().count("user.created") == 0
    assert len(env.emu.users()) == 1
    assert user.key == (str(existing["id"]) if env.emu.line3 else existing["uuid"])


@pytest.mark.parametrize("dup_code", ["A019", "A018"])
@pytest.mark.parametrize("version", MAIN_LINES)
async def test_duplicate_username_on_create_adopts_or_refuses(version: str, dup_code: str) -> None:
    """The by-username look-up misses (a race), create answers A019 (stock) or 500 A018
    (the local build); the adapter then adopts a shop user and refuses a foreign one."""
    async with (
        RemnawaveEmulator(version, duplicate_username_code=dup_code) as emu,
        RemnawavePanel(settings_for(emu)) as panel,
    ):
        env = Env(emu, panel)
        not_found = {"errorCode": "A063", "message": "User with specified params not found"}
        emu.add_user("vs_11", tag="VPNSHOP")
        emu.fail(r"/users/by-username/vs_11", 404, method="GET", times=1, body=not_found)
        user = await panel.apply(env.access(11))
        assert user.username == "vs_11"
        assert user.tag == "VPNSHOP"

        emu.add_user("vs_12", tag="SOMEONE")
        emu.fail(r"/users/by-username/vs_12", 404, method="GET", times=1, body=not_found)
        with pytest.raises(PanelNotOwnedError):
            await panel.apply(env.access(12))
        assert emu.user("vs_12")["tag"] == "SOMEONE"


@pytest.mark.parametrize("tag", [None, "OTHER_SHOP"])
async def test_foreign_users_are_never_modified(env: Env, tag: str | None) -> None:
    """A panel user without the shop's tag is never applied to, enabled, disabled, reset, revoked,
    deleted or stripped of devices (PanelNotOwnedError, no write), but can be read."""
    foreign = env.emu.add_user("vs_20", tag=tag, telegram_id=77)
    key = str(foreign["id"]) if env.emu.line3 else foreign["uuid"]
    env.emu.add_hwid_device(key, "HWIDFOREIGN1")
    mark = env.mark()
    with pytest.raises(PanelNotOwnedError):
        await env.panel.apply(env.access(20))
    with pytest.raises(PanelNotOwnedError):
        await env.panel.apply(env.access(20, key=key))
    for call in (
        env.panel.enable(key),
        env.panel.disable(key),
        env.panel.reset_traffic(key),
        env.panel.revoke(key),
        env.panel.delete(key),
        env.panel.remove_device(key, "HWIDFOREIGN1"),
    ):
        with pytest.raises(PanelNotOwnedError):
            await call
    assert env.write_count(mark) == 0
    # Reads are allowed.
    assert (await env.panel.get(key)) is not None
    assert [u.key for u in await env.panel.find_by_telegram_id(77)] == [key]
    assert [d.hwid for d in await env.panel.devices(key)] == ["HWIDFOREIGN1"]


async def test_link_takes_ownership(env: Env) -> None:
    """link() puts the shop's tag on a foreign user (idempotently) so the shop may then manage it,
    and raises PanelNotFoundError for an unknown key."""
    foreign = env.emu.add_user("vs_21", tag="LEGACY")
    key = str(foreign["id"]) if env.emu.line3 else foreign["uuid"]
    linked = await env.panel.link(key)
    assert linked.tag == "VPNSHOP"
    mark = env.mark()
    assert (await env.panel.link(key)).tag == "VPNSHOP"
    assert env.write_count(mark) == 0
    disabled = await env.panel.disable(key)
    assert disabled.status is PanelStatus.DISABLED
    with pytest.raises(PanelNotFoundError):
        await env.panel.link("999999" if env.emu.line3 else "3b241101-e2bb-4255-8caf-4136c566a962")


async def test_a_stale_key_never_touches_another_user(env: Env) -> None:
    """An access stored with another user's key is applied to its own username, leaving the other
    user unchanged."""
    other = await env.panel.apply(env.access(30))
    mine = await env.panel.apply(env.access(31, key=other.key))  # wrong key stored
    assert mine.username == "vs_31"
    assert mine.key != other.key
    assert env.emu.user(other.key)["username"] == "vs_30"


async def test_a_key_from_the_other_line_is_resolved_by_username(env: Env) -> None:
    """After a 2.x -> 3.x upgrade the stored uuid keys no longer fit (and vice versa)."""
    access = env.access(33)
    user = await env.panel.apply(access)
    old_key = "3b241101-e2bb-4255-8caf-4136c566a962" if env.emu.line3 else "17"
    mark = env.mark()
    again = await env.panel.apply(attrs.evolve(access, key=old_key))
    assert again.key == user.key
    assert env.write_count(mark) == 0


async def test_a_vanished_user_is_created_again(env: Env) -> None:
    """When the user behind a stored key is gone from the panel, apply() creates it again under a
    new key."""
    access = env.access(32)
    user = await env.panel.apply(access)
    env.emu.users_by_id.clear()
    again = await env.panel.apply(attrs.evolve(access, key=user.key))
    assert again.key != user.key
    assert again.username == "vs_32"


# -- actions -----------------------------------------------------------------------------------
async def test_enable_and_disable_are_idempotent(env: Env) -> None:
    """Disabling a disabled or enabling an enabled user succeeds (the panel's A029/A030 are
    absorbed) and emits no second event."""
    user = await env.panel.apply(env.access(40))
    assert (await env.panel.disable(user.key)).status is PanelStatus.DISABLED
    mark = env.mark()
    assert (await env.panel.disable(user.key)).status is PanelStatus.DISABLED  # A029
    assert any(r.path.endswith("/actions/disable") for r in env.emu.requests[mark:])
    assert (await env.panel.enable(user.key)).status is PanelStatus.ACTIVE
    assert (await env.panel.enable(user.key)).status is PanelStatus.ACTIVE  # A030
    assert env.emu.events().count("user.enabled") == 1
    assert env.emu.events().count("user.disabled") == 1


async def test_reset_traffic(env: Env) -> None:
    """reset_traffic() sets the used traffic to zero and keeps the lifetime traffic."""
    user = await env.panel.apply(env.access(41, traffic_limit_bytes=10_000))
    env.emu.set_traffic_used(user.key, 4_000)
    before = await env.panel.get(user.key)
    assert before is not None
    assert before.used_traffic_bytes == 4_000
    reset = await env.panel.reset_traffic(user.key)
    assert reset.used_traffic_bytes == 0
    assert reset.lifetime_used_traffic_bytes == 4_000


async def test_revoke_issues_a_new_link(env: Env) -> None:
    """revoke() gives the user a new short uuid and subscription link under the same key."""
    user = await env.panel.apply(env.access(42))
    revoked = await env.panel.revoke(user.key)
    assert revoked.short_uuid != user.short_uuid
    assert revoked.subscription_url != user.subscription_url
    assert revoked.subscription_url.endswith(revoked.short_uuid)
    assert revoked.key == user.key


async def test_delete_is_idempotent(env: Env) -> None:
    """delete() removes the user, and deleting a missing or just-vanished user (A025) succeeds."""
    user = await env.panel.apply(env.access(43))
    await env.panel.delete(user.key)
    assert await env.panel.get(user.key) is None
    await env.panel.delete(user.key)
    await env.panel.delete("12345" if env.emu.line3 else "3b241101-e2bb-4255-8caf-4136c566a962")
    # Deleted between the ownership check and the DELETE: A025 is fine too.
    user = await env.panel.apply(env.access(44))
    env.emu.fail(
        r"/users/[^/]+",
        404,
        method="DELETE",
        times=1,
        body={"errorCode": "A025", "message": "User not found"},
    )
    await env.panel.delete(user.key)


async def test_get_returns_none_when_missing(env: Env) -> None:
    """get() returns None for an unknown or malformed key and the user for a known one."""
    assert await env.panel.get("987654") is None
    assert await env.panel.get("3b241101-e2bb-4255-8caf-4136c566a962") is None
    assert await env.panel.get("not a key") is None
    user = await env.panel.apply(env.access(45))
    got = await env.panel.get(user.key)
    assert got is not None
    assert got.username == "vs_45"


@pytest.mark.parametrize("version", ["3.3.2", "2.8.1", "2.4.0", "2.3.0"])
async def test_find_by_telegram_id(version: str) -> None:
    """find_by_telegram_id() asks the panel on every line and returns every user with that telegram
    id, or an empty list (also when 2.3 answers 404 A062)."""
    async with open_env(version) as env:
        a = await env.panel.apply(env.access(50, telegram_id=555))
        env.emu.add_user("admin_made", telegram_id=555)
        await env.panel.apply(env.access(51, telegram_id=556))
        found = await env.panel.find_by_telegram_id(555)
        assert [u.username for u in found] == ["vs_50", "admin_made"]
        assert found[0].key == a.key
        assert await env.panel.find_by_telegram_id(999) == []
        misses = [
            r
            for r in env.emu.requests
            if r.path.endswith("/999") or r.query.get("telegramId") == "999"
        ]
        assert misses  # asked the panel
    if version == "2.3.0":  # the panel itself answers 404 A062 for "none"
        headers = {"X-Forwarded-For": "1.1.1.1", "X-Forwarded-Proto": "https"}
        async with (
            RemnawaveEmulator(version) as emu,
            aiohttp.ClientSession() as http,
            http.get(
                emu.base_url + "/api/users/by-telegram-id/1",
                headers={**headers, "Authorization": f"Bearer {emu.token}"},
            ) as resp,
        ):
            assert resp.status == 404
            assert (await resp.json())["errorCode"] == "A062"


async def test_devices_and_remove_device(env: Env) -> None:
    """devices() lists a user's HWID devices with their details, remove_device() removes one, and an
    unknown user raises PanelNotFoundError."""
    user = await env.panel.apply(env.access(60, device_limit=5))
    assert await env.panel.devices(user.key) == []
    env.emu.add_hwid_device(
        user.key,
        "DEVICEAAAA01",
        platform="Android",
        os_version="14",
        device_model="Pixel",
        user_agent="Happ/1.0",
    )
    env.emu.add_hwid_device(user.key, "DEVICEBBBB02", platform="iOS")
    devices = await env.panel.devices(user.key)
    assert [d.hwid for d in devices] == ["DEVICEAAAA01", "DEVICEBBBB02"]
    assert devices[0].platform == "Android"
    assert devices[0].device_model == "Pixel"
    remaining = await env.panel.remove_device(user.key, "DEVICEAAAA01")
    assert [d.hwid for d in remaining] == ["DEVICEBBBB02"]
    with pytest.raises(PanelNotFoundError):
        await env.panel.devices(
            "424242" if env.emu.line3 else "3b241101-e2bb-4255-8caf-4136c566a962"
        )


async def test_squads_stats_and_health(env: Env) -> None:
    """squads() lists squads with member counts, stats() counts users by status, and health() is
    False while the panel is down."""
    premium = env.emu.add_squad("Premium")
    await env.panel.apply(env.access(61))
    squads = await env.panel.squads()
    assert [(s.name, s.members) for s in squads] == [("Default-Squad", 1), ("Premium", 0)]
    assert squads[1].uuid == premium
    env.emu.add_user("someone", status="DISABLED")
    stats = await env.panel.stats()
    assert stats.users_total == 2
    assert stats.users_by_status == {"ACTIVE": 1, "DISABLED": 1, "LIMITED": 0, "EXPIRED": 0}
    assert await env.panel.health()
    env.emu.down = True
    assert not await env.panel.health()


# -- transport ---------------------------------------------------------------------------------
async def test_sends_auth_forwarded_headers_api_key_and_cookies() -> None:
    """Every request carries the bearer token, the forwarded headers, the X-Api-Key and the
    configured cookies."""
    async with RemnawaveEmulator("3.3.2") as emu:
        panel = RemnawavePanel(settings_for(emu, x_api_key="caddy-key", cookies={"gate": "open"}))
        async with panel:
            await panel.stats()
        headers = emu.requests[-1].headers
        assert headers["Authorization"] == f"Bearer {emu.token}"
        assert headers["X-Forwarded-For"] == "127.0.0.1"
        assert headers["X-Forwarded-Proto"] == "https"
        assert headers["X-Api-Key"] == "caddy-key"
        assert "gate=open" in headers.get("Cookie", "")


async def test_one_session_for_the_adapter_life(env: Env) -> None:
    """The adapter uses one HTTP session for its whole life, closes it in aclose(), and refuses
    calls afterwards with a message saying to start it."""
    session = env.panel._client._session
    await env.panel.apply(env.access(70))
    await env.panel.stats()
    assert env.panel._client._session is session
    await env.panel.aclose()
    assert session is not None
    assert session.closed
    with pytest.raises(RuntimeError, match="start"):
        await env.panel.stats()


async def test_missing_forwarded_headers_give_a_clear_error() -> None:
    """A panel that drops the connection for missing forwarded headers gives
    PanelConnectionDroppedError saying to send them or use https."""
    async with RemnawaveEmulator("3.3.2") as emu:
        panel = RemnawavePanel(settings_for(emu, forwarded_headers="never"))
        await panel.start(detect_now=False)
        with pytest.raises(PanelConnectionDroppedError) as caught:
            await panel.info()
        await panel.aclose()
    assert isinstance(caught.value, PanelUnavailableError)
    assert "send forwarded headers / use https" in str(caught.value)


async def test_forwarded_header_check_can_be_switched_off() -> None:
    """A panel whose proxy check is off is reached without forwarded headers."""
    async with (
        RemnawaveEmulator("3.3.2", require_forwarded_headers=False) as emu,
        RemnawavePanel(settings_for(emu, forwarded_headers="never")) as panel,
    ):
        assert (await panel.info()).version == "3.3.2"


async def test_bad_token_is_unauthorized() -> None:
    """A wrong token fails start() with PanelUnauthorizedError (401) after a single request, without
    retries."""
    async with RemnawaveEmulator("3.3.2") as emu:
        panel = RemnawavePanel(settings_for(emu, token="wrong"))
        with pytest.raises(PanelUnauthorizedError) as caught:
            await panel.start()
        await panel.aclose()
        assert caught.value.status == 401
        assert len(emu.requests) == 1  # 4xx is not retried


async def test_token_scopes_are_enforced() -> None:
    """A token without the system scope still detects the line by probing, a write it may not do
    raises PanelForbiddenError without retries, and health() counts a 403 as healthy."""
    async with (
        RemnawaveEmulator("3.3.2", token_scopes=["users:read"]) as emu,
        RemnawavePanel(settings_for(emu)) as panel,
    ):
        info = await panel.info()  # no system scope: detected by probing
        assert info.api_line == "3"
        assert info.version is None
        mark = len(emu.requests)
        with pytest.raises(PanelForbiddenError):
            await panel.apply(
                PanelAccess(username="vs_1", expires_at=datetime.now(UTC) + timedelta(days=1))
            )
        assert len(emu.requests) - mark == 2  # by-username, then one refused create
        assert await panel.health()  # a 403 still proves the token works


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_transient_failures_are_retried(env: Env, status: int) -> None:
    """A 5xx or 429 answer is retried, and the call succeeds once the panel answers."""
    env.emu.fail(r"/system/stats", status, times=2, retry_after=0.01 if status == 429 else None)
    mark = env.mark()
    stats = await env.panel.stats()
    assert stats.users_total == 0
    assert env.mark() - mark == 3


async def test_retries_give_up_with_the_vendor_error(env: Env) -> None:
    """When every retry fails, PanelUnavailableError carries the panel's last status, code and
    message."""
    env.emu.fail(r"/system/stats", 500, times=None, error_code="A001", message="boom")
    mark = env.mark()
    with pytest.raises(PanelUnavailableError) as caught:
        await env.panel.stats()
    assert env.mark() - mark == 3
    assert caught.value.vendor_code == "A001"
    assert caught.value.vendor_message == "boom"
    assert caught.value.status == 500


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PanelInvalidError),
        (401, PanelUnauthorizedError),
        (403, PanelForbiddenError),
        (404, PanelNotFoundError),
        (409, PanelConflictError),
    ],
)
async def test_client_errors_are_not_retried(env: Env, status: int, error: type[Exception]) -> None:
    """A 4xx answer raises its port error after one request, without retries."""
    env.emu.fail(r"/system/stats", status, times=None)
    mark = env.mark()
    with pytest.raises(error):
        await env.panel.stats()
    assert env.mark() - mark == 1


async def test_vendor_codes_are_carried(env: Env) -> None:
    """Port errors carry the panel's error code, message and status, and validation issues name the
    field and the panel's message."""
    user = await env.panel.apply(env.access(80))
    await env.panel.disable(user.key)
    line = env.panel._line
    assert line is not None
    with pytest.raises(PanelConflictError) as caught:
        await line.action(user.key, "disable")
    assert caught.value.vendor_code == "A029"
    assert caught.value.vendor_message == "User already disabled"
    assert caught.value.status == 400
    with pytest.raises(PanelInvalidError) as invalid:
        await line.update(user.key, {"expireAt": "2020-01-01T00:00:00.000Z"})
    assert "Expiration date cannot be in the past" in str(invalid.value)


async def test_a_hanging_panel_times_out() -> None:
    """A panel that never answers raises PanelTimeoutError after the timeout, and calls work again
    once it answers."""
    async with (
        RemnawaveEmulator("3.3.2") as emu,
        RemnawavePanel(settings_for(emu, timeout=0.2, retry_attempts=2)) as panel,
    ):
        emu.hang = True
        with pytest.raises(PanelTimeoutError):
            await panel.stats()
        emu.hang = False
        assert (await panel.stats()).users_total == 0


async def test_a_down_panel_is_unavailable_and_start_survives_it() -> None:
    """start() survives an unreachable panel, calls raise PanelUnavailableError while it is down,
    and the line is detected once it is back."""
    async with RemnawaveEmulator("3.3.2") as emu:
        emu.down = True
        panel = RemnawavePanel(settings_for(emu))
        await panel.start()  # does not fail: detection is deferred
        with pytest.raises(PanelUnavailableError):
            await panel.info()
        emu.down = False
        assert (await panel.info()).api_line == "3"
        await panel.aclose()


async def test_random_errors_are_absorbed_by_retries() -> None:
    """With 30% random server errors, retries let repeated applies converge on exactly one user."""
    async with (
        RemnawaveEmulator("3.3.2", seed=7) as emu,
        RemnawavePanel(settings_for(emu, retry_attempts=8)) as panel,
    ):
        emu.error_rate = 0.3
        access = PanelAccess(username="vs_90", expires_at=datetime.now(UTC) + timedelta(days=3))
        for _ in range(5):
            user = await panel.apply(access)
        emu.error_rate = 0.0
        assert user.username == "vs_90"
        assert len(emu.users()) == 1
