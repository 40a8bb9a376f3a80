"""``vpnshop run scheduler``: the background-work process.

It builds the App once, runs the library's outbox drain loop (woken at once by this
process's own commits, polling otherwise) and every periodic job of the registry
(``vpnshop_scheduler.jobs``), and serves ``GET /healthz`` and ``GET /metrics`` on
``VPNSHOP_SCHEDULER_HOST:PORT``. SIGTERM or SIGINT stops claiming work, lets the jobs in
hand finish, then closes the App. Any number of replicas may run on one PostgreSQL
database (claims skip locked rows; singleton jobs take a lease row); on SQLite run one.
No aiogram here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import Settings, SettingUnusableError
from vpnshop.domain.broadcast import BroadcastProgress
from vpnshop.ports.storage import StorageUnavailableError
from vpnshop.services.broadcasts import BroadcastStatusQuery
from vpnshop.services.drain import DrainLoop
from vpnshop.services.periodic import JobRegistry, PeriodicRunner
from vpnshop_scheduler.jobs import build_registry
from vpnshop_scheduler.metrics import CONTENT_TYPE, BroadcastCollector, registry_for, render

log = logging.getLogger(__name__)


def holder_id() -> str:
    """Who holds this process's leases, for an operator reading the lease table."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def create_app(
    drain: DrainLoop,
    runner: PeriodicRunner,
    broadcasts: Callable[[], Awaitable[Sequence[BroadcastProgress]]] | None = None,
) -> web.Application:
    """/healthz and /metrics; *broadcasts* reads the newest broadcasts' progress for
    /metrics (skipped while the database is unavailable)."""
    progress = BroadcastCollector() if broadcasts is not None else None
    registry = registry_for(drain, runner, progress)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "jobs": runner.registry.names()})

    async def metrics(_: web.Request) -> web.Response:
        if broadcasts is not None and progress is not None:
            try:
                progress.progress = await broadcasts()
            except StorageUnavailableError:
                log.warning("metrics: the database is unavailable; broadcast progress left out")
                progress.progress = ()
        body = await asyncio.to_thread(render, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def build(
    app: App, wake: asyncio.Event, registry: JobRegistry | None = None
) -> tuple[DrainLoop, PeriodicRunner]:
    """The drain loop and the periodic runner of one scheduler process."""
    sched = app.settings.scheduler
    drain = DrainLoop(
        app.outbox,
        wake=wake,
        concurrency=sched.outbox_concurrency,
        interval=sched.interval("outbox"),
    )
    jobs = registry if registry is not None else build_registry(app)
    return drain, PeriodicRunner(app.deps, jobs, holder=holder_id())


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
    registry: JobRegistry | None = None,
    app: App | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Run the scheduler until SIGTERM/SIGINT (or *stop* is set); *ready* gets the URL
    of /healthz and /metrics once they listen.

    Given an *app*, the scheduler is one part of a bigger process (``vpnshop run all``):
    the caller owns the App and the signals, and sets *wake* (the App's kick) when its
    commits enqueue outbox jobs."""
    stop = stop or asyncio.Event()
    if app is not None:
        await serve_app(app, stop, wake or asyncio.Event(), ready=ready, registry=registry)
        return
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with bootstrap(settings, kick=wake.set) as built:
            await serve_app(built, stop, wake, ready=ready, registry=registry)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_app(
    app: App,
    stop: asyncio.Event,
    wake: asyncio.Event,
    *,
    ready: Callable[[str], None] | None = None,
    registry: JobRegistry | None = None,
) -> None:
    """Drain *app*'s outbox and run its periodic jobs until *stop*; the App stays open."""
    drain, runner = build(app, wake, registry)
    progress = BroadcastStatusQuery(app.deps).recent
    runner_app = web.AppRunner(create_app(drain, runner, progress), access_log=None)
    await runner_app.setup()
    sched = app.settings.scheduler
    try:
        await web.TCPSite(runner_app, sched.host, sched.port).start()
    except OSError as exc:
        await runner_app.cleanup()
        raise SettingUnusableError(
            "VPNSHOP_SCHEDULER_PORT",
            f"cannot listen on {sched.host}:{sched.port}: {exc.strerror or exc}",
        ) from None
    host, port = runner_app.addresses[0][:2]
    url = f"http://{host}:{port}"
    tasks = [
        asyncio.create_task(drain.run(stop), name="vpnshop-outbox"),
        asyncio.create_task(runner.run(stop), name="vpnshop-periodic"),
    ]
    try:
        log.info(
            "scheduler running; jobs: %s; /healthz and /metrics on %s",
            ", ".join(runner.registry.names()) or "none",
            url,
        )
        if ready is not None:
            ready(url)
        stopped = asyncio.create_task(stop.wait())
        # A loop that ends by itself is a bug; stop the rest rather than run half.
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        stop.set()
        log.info("scheduler stopping: finishing the jobs in hand")
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner_app.cleanup()
    log.info("scheduler stopped")
