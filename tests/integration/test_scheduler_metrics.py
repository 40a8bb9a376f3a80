"""The scheduler's /metrics reports broadcast progress read from the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient

from vpnshop.bootstrap import Storage, wire
from vpnshop.config import Settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.broadcast import BroadcastProgress, Segment
from vpnshop.ports.storage import StorageUnavailableError
from vpnshop.services.broadcasts import BroadcastStatusQuery, CreateBroadcast
from vpnshop.testing.fakes import FakeClock, SequentialIds
from vpnshop_scheduler.server import build, create_app

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_metrics_show_each_recent_broadcasts_recipients_by_state(
    uow_factory: Storage, aiohttp_client: object
) -> None:
    """A broadcast to three customers shows three pending recipients in /metrics."""
    app = wire(Settings(), storage=uow_factory, clock=FakeClock(NOW), ids=SequentialIds())
    for telegram_id in (1, 2, 3):
        await app.register_customer(telegram_id)
    made = await CreateBroadcast(app.deps)(Segment.ALL, "hello", actor=Actor.admin(1))
    drain, runner = build(app, asyncio.Event())
    web_app = create_app(drain, runner, BroadcastStatusQuery(app.deps).recent)
    client: TestClient = await aiohttp_client(web_app)  # type: ignore[operator]
    text = await (await client.get("/metrics")).text()
    bid = made.broadcast.id
    assert f'vpnshop_broadcast_recipients{{broadcast="{bid}",status="pending"}} 3.0' in text
    assert f'vpnshop_broadcast_recipients{{broadcast="{bid}",status="sent"}} 0.0' in text


async def test_metrics_answer_while_the_database_is_down(aiohttp_client: object) -> None:
    """With the store unavailable /metrics still answers, without broadcast progress."""
    app = wire(
        Settings(),
        storage=lambda: None,
        clock=FakeClock(NOW),
        ids=SequentialIds(),  # type: ignore[arg-type, return-value]
    )

    async def unavailable() -> list[BroadcastProgress]:
        raise StorageUnavailableError("database down")

    drain, runner = build(app, asyncio.Event())
    client: TestClient = await aiohttp_client(create_app(drain, runner, unavailable))  # type: ignore[operator]
    response = await client.get("/metrics")
    assert response.status == 200
    assert "vpnshop_broadcast_recipients{" not in await response.text()
