"""``vpnshop run webhooks``: the webhook server process.

It builds the App once (``vpnshop.bootstrap``), serves :func:`create_app` on
``VPNSHOP_WEBHOOKS_HOST:PORT``, and runs the outbox in the background: at once when a
commit of this process enqueued jobs (bootstrap's ``kick``), otherwise every few seconds.
SIGTERM or SIGINT stops accepting connections, lets in-flight requests finish (up to
``shutdown_timeout``; a request still sending its headers or body is not waited for),
stops the outbox loop, then closes the App. No aiogram here.

Connections are bounded in time (``vpnshop_webhooks.deadlines``): a request's headers and
body must each arrive within ``VPNSHOP_WEBHOOKS_HEADER_TIMEOUT`` /
``VPNSHOP_WEBHOOKS_BODY_TIMEOUT`` seconds, and idle keep-alive connections close after
``VPNSHOP_WEBHOOKS_KEEPALIVE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import Settings, SettingUnusableError
from vpnshop.logs import quiet_client_errors
from vpnshop.services.drain import DrainLoop
from vpnshop_webhooks.app import create_app
from vpnshop_webhooks.deadlines import WebhookRunner
from vpnshop_webhooks.metrics import WebhookMetrics
from vpnshop_webhooks.panel import panel_routes

log = logging.getLogger(__name__)

OUTBOX_INTERVAL = 5.0  # seconds between polls when nobody kicks
SHUTDOWN_TIMEOUT = 20.0  # seconds in-flight requests get to finish
HEADER_TIMEOUT = 5.0  # defaults of the settings of the same names
KEEPALIVE_TIMEOUT = 15.0


def outbox_context(
    app: App, wake: asyncio.Event, interval: float = OUTBOX_INTERVAL
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry that owns the library's outbox drain loop for the server's
    lifetime; on the way out the jobs in hand finish."""

    async def ctx(_: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        loop = DrainLoop(
            app.outbox,
            wake=wake,
            concurrency=app.settings.scheduler.outbox_concurrency,
            interval=interval,
        )
        task = asyncio.create_task(loop.run(stop), name="vpnshop-outbox")
        yield
        stop.set()
        await task

    return ctx


async def start_site(
    web_app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    access_log: bool = True,
    header_timeout: float = HEADER_TIMEOUT,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
) -> tuple[web.AppRunner, str]:
    """Serve *web_app* on host:port (0: any free port); returns the runner and base URL.

    The body deadline is the app's own (``create_app(body_timeout=...)``)."""
    quiet_client_errors()  # a client's mistake is one log line, never a traceback
    runner = WebhookRunner(
        web_app,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        shutdown_timeout=shutdown_timeout,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return runner, f"http://{shown}:{bound_port}"


def listen_error(settings: Settings, exc: OSError) -> SettingUnusableError:
    """Why the server cannot listen, naming the setting to change."""
    host, port = settings.webhooks_host, settings.webhooks_port
    if exc.errno == errno.EADDRINUSE:
        return SettingUnusableError(
            "VPNSHOP_WEBHOOKS_PORT", f"port {port} on {host} is already in use"
        )
    if exc.errno == errno.EACCES:
        return SettingUnusableError(
            "VPNSHOP_WEBHOOKS_PORT", f"port {port} needs privileges this user does not have"
        )
    if isinstance(exc, socket.gaierror) or not exc.errno:
        cause = exc.strerror or str(exc)  # getaddrinfo's errno is not an OS errno
    else:
        cause = os.strerror(exc.errno)
    return SettingUnusableError("VPNSHOP_WEBHOOKS_HOST", f"cannot listen on {host}: {cause}")


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
    app: App | None = None,
    observe_panel: Callable[[Callable[[str], None]], None] | None = None,
) -> None:
    """Run the webhook server until SIGTERM/SIGINT (or *stop* is set).

    *ready* is called with the base URL once the socket listens (tests, supervisors).
    Given an *app*, the server is one part of a bigger process (``vpnshop run all``): the
    caller owns the App, the signals and the outbox drain, so none of them is touched here;
    the server hands its panel-call counter to *observe_panel*, which joins it to the
    observer the caller gave the App's panel.
    """
    stop = stop or asyncio.Event()
    if app is not None:
        metrics = WebhookMetrics()
        if observe_panel is not None:
            observe_panel(metrics.panel_call)
        await serve_app(app, stop, ready=ready, metrics=metrics)
        return
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        metrics = WebhookMetrics()
        async with bootstrap(settings, kick=wake.set, on_panel_call=metrics.panel_call) as built:
            await serve_app(built, stop, ready=ready, metrics=metrics, wake=wake)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_app(
    app: App,
    stop: asyncio.Event,
    *,
    ready: Callable[[str], None] | None = None,
    metrics: WebhookMetrics | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Serve *app*'s webhooks until *stop*; with *wake*, also drain the outbox (woken by
    it). The App stays open."""
    settings = app.settings
    web_app = create_app(app, metrics=metrics, extra_routes=panel_routes(app))
    if wake is not None:
        web_app.cleanup_ctx.append(outbox_context(app, wake))
    try:
        runner, url = await start_site(
            web_app,
            settings.webhooks_host,
            settings.webhooks_port,
            header_timeout=settings.webhooks_header_timeout,
            keepalive_timeout=settings.webhooks_keepalive_timeout,
        )
    except OSError as exc:  # busy port, unknown host: the operator's to fix
        raise listen_error(settings, exc) from None
    try:
        enabled = ", ".join(sorted(app.gateways)) or "none"
        log.info("webhooks listening on %s; providers: %s", url, enabled)
        if ready is not None:
            ready(url)
        await stop.wait()
        log.info("webhooks stopping: finishing in-flight requests")
    finally:
        await runner.cleanup()
    log.info("webhooks stopped")
