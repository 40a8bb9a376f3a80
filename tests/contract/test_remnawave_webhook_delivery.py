"""Webhooks the emulator signs and POSTs, received over HTTP and checked by the verifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from aiohttp import web

from vpnshop.adapters.remnawave import RemnawavePanel, RemnawaveSettings
from vpnshop.adapters.remnawave.webhooks import RemnawaveWebhookVerifier
from vpnshop.domain.panel import PanelAccess
from vpnshop.domain.panel_events import (
    PanelEvent,
    PanelEventType,
    PanelWebhookError,
    ReplayedWebhookError,
)
from vpnshop.testing.remnawave import RemnawaveEmulator

SECRET = "Zx" * 32  # the panel wants >= 32 letters and digits


@attrs.define
class Receiver:
    verifier: RemnawaveWebhookVerifier
    events: list[PanelEvent] = attrs.field(factory=list)
    refused: list[str] = attrs.field(factory=list)
    replays: int = 0
    fail_next: int = 0  # answer 500 (after verifying) this many times
    forget_on_failure: bool = True
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = self.verifier.parse(body, request.headers)
        except ReplayedWebhookError:
            self.replays += 1
            return web.Response(status=200, text="duplicate")
        except PanelWebhookError as exc:
            self.refused.append(exc.code)
            return web.Response(status=400, text=exc.code)
        if self.fail_next:
            self.fail_next -= 1
            if self.forget_on_failure:
                self.verifier.forget(event.dedupe_key)
            return web.Response(status=500)
        self.events.append(event)
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(RemnawaveWebhookVerifier(SECRET))
    app = web.Application()
    app.router.add_post("/webhooks/remnawave", rec.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/webhooks/remnawave"
    yield rec
    await runner.cleanup()


def _settings(emu: RemnawaveEmulator) -> RemnawaveSettings:
    return RemnawaveSettings(
        base_url=emu.base_url, token=emu.token, retry_initial_wait=0.001, retry_max_wait=0.01
    )


@pytest.mark.parametrize("version", ["3.3.2", "2.8.1", "2.5.0", "2.3.0"])
async def test_panel_changes_arrive_as_verified_events(receiver: Receiver, version: str) -> None:
    """Every change the adapter or a test makes on the panel, on each API line, reaches the webhook
    receiver signed, verified and parsed into the right event, in order, with its user, device,
    threshold and expiry details."""
    async with (
        RemnawaveEmulator(
            version, webhook_url=receiver.url, webhook_secret=SECRET, webhook_retry_delay=0.01
        ) as emu,
        RemnawavePanel(_settings(emu)) as panel,
    ):
        access = PanelAccess(
            username="vs_1",
            expires_at=datetime.now(UTC) + timedelta(days=30),
            traffic_limit_bytes=1000,
            telegram_id=4242,
            internal_squads=(emu.default_squad_uuid,),
        )
        user = await panel.apply(access)
        await panel.apply(attrs.evolve(access, key=user.key, description="changed"))
        await panel.disable(user.key)
        await panel.enable(user.key)
        emu.connect(user.key)
        emu.set_traffic_used(user.key, 850)
        emu.set_traffic_used(user.key, 1000)
        await panel.reset_traffic(user.key)
        await panel.revoke(user.key)
        emu.add_hwid_device(user.key, "PHONE0000001", platform="Android")
        await panel.remove_device(user.key, "PHONE0000001")
        emu.notify_expiration(user.key, -24)
        emu.notify_expiration(user.key, 24)
        emu.set_expire_at(user.key, datetime.now(UTC) - timedelta(seconds=1))
        emu.expire_due_users()
        emu.emit_raw(
            {
                "scope": "node",
                "event": "node.connection_lost",
                "timestamp": emu.payload_timestamp(),
                "data": {},
            }
        )
        await panel.delete(user.key)
        await emu.flush_webhooks()

    assert receiver.refused == []
    assert receiver.replays == 0
    types = [e.type for e in receiver.events]
    assert types == [
        PanelEventType.USER_CREATED,
        PanelEventType.USER_MODIFIED,
        PanelEventType.USER_DISABLED,
        PanelEventType.USER_ENABLED,
        PanelEventType.USER_FIRST_CONNECTED,
        PanelEventType.USER_BANDWIDTH_THRESHOLD,
        PanelEventType.USER_LIMITED,
        PanelEventType.USER_TRAFFIC_RESET,
        PanelEventType.USER_REVOKED,
        PanelEventType.DEVICE_ADDED,
        PanelEventType.DEVICE_DELETED,
        PanelEventType.USER_EXPIRATION,
        PanelEventType.USER_EXPIRATION,
        PanelEventType.USER_EXPIRED,
        PanelEventType.IGNORED,
        PanelEventType.USER_DELETED,
    ]
    users = [e.user for e in receiver.events if e.user is not None]
    assert {u.key for u in users} == {user.key}
    assert all(u.telegram_id == 4242 for u in users)
    warnings = [e for e in receiver.events if e.type is PanelEventType.USER_EXPIRATION]
    assert [w.expiration_hours for w in warnings] == [-24, 24]
    legacy = version < "2.8"
    assert [w.name for w in warnings] == (
        ["user.expires_in_24_hours", "user.expired_24_hours_ago"]
        if legacy
        else ["user.expiration", "user.expiration"]
    )
    threshold = next(
        e for e in receiver.events if e.type is PanelEventType.USER_BANDWIDTH_THRESHOLD
    )
    assert threshold.threshold_percent == 80
    limited = next(e for e in receiver.events if e.type is PanelEventType.USER_LIMITED)
    assert limited.user is not None
    assert limited.user.used_traffic_bytes == 1000
    device = next(e for e in receiver.events if e.type is PanelEventType.DEVICE_ADDED)
    assert device.device is not None
    assert device.device.platform == "Android"


async def test_a_failed_handling_is_retried_by_the_panel(receiver: Receiver) -> None:
    """A delivery the receiver fails is retried by the panel and the event is handled once."""
    receiver.fail_next = 1
    async with RemnawaveEmulator(
        webhook_url=receiver.url, webhook_secret=SECRET, webhook_retry_delay=0.01
    ) as emu:
        emu.add_user("someone", emit=True)
        await emu.flush_webhooks()
        assert emu.webhooks[0].attempts == 2
        assert emu.webhooks[0].status == 200
    assert [e.type for e in receiver.events] == [PanelEventType.USER_CREATED]


async def test_a_retry_after_a_lost_answer_is_acknowledged_as_a_replay(receiver: Receiver) -> None:
    """A retry of a delivery that was handled but whose 2xx was lost is acknowledged with 200 and
    counted as a replay, not handled again."""
    receiver.fail_next = 1
    receiver.forget_on_failure = False  # handled, but the 2xx never reached the panel
    async with RemnawaveEmulator(
        webhook_url=receiver.url, webhook_secret=SECRET, webhook_retry_delay=0.01
    ) as emu:
        emu.add_user("someone", emit=True)
        await emu.flush_webhooks()
        assert emu.webhooks[0].status == 200
    assert receiver.replays == 1


async def test_a_wrong_secret_is_refused(receiver: Receiver) -> None:
    """A delivery signed with another secret is answered 400 and refused for its signature, and no
    event is handled."""
    async with RemnawaveEmulator(
        webhook_url=receiver.url, webhook_secret="Q" * 64, webhook_attempts=1
    ) as emu:
        emu.add_user("someone", emit=True)
        await emu.flush_webhooks()
        assert emu.webhooks[0].status == 400
    assert receiver.refused == ["panel_webhook_signature"]
    assert receiver.events == []
