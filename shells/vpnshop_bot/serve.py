"""``vpnshop run bot``: the bot process.

Long polling by default; with ``VPNSHOP_BOT_MODE=webhook`` an aiohttp server on
``VPNSHOP_BOT_WEBHOOK_HOST:PORT`` takes Telegram's POSTs at ``/tg/<secret path>``, checks
``X-Telegram-Bot-Api-Secret-Token``, and ``setWebhook`` asks for exactly the update kinds
the handlers use. Every Bot API call goes to ``VPNSHOP_BOT_API_URL``. Metrics at
``/metrics`` on ``VPNSHOP_BOT_METRICS_PORT``.

SIGTERM/SIGINT: no new updates are taken, in-flight handlers finish (up to
``SHUTDOWN_TIMEOUT``), then the HTTP sessions, Redis and the App close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.base import BaseStorage
from aiogram.methods.base import Response, TelegramMethod
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vpnshop.adapters.ratelimit import MemoryRateLimiter, RedisRateLimiter
from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import Settings, SettingUnusableError
from vpnshop.config.bot import BotSettings
from vpnshop.ports.ratelimit import RateLimiter
from vpnshop_bot.dispatcher import allowed_updates, build_dispatcher
from vpnshop_bot.metrics import BotMetrics

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT = 20.0  # seconds in-flight handlers get to finish


def make_bot(token: str, api_url: str) -> Bot:
    """An aiogram Bot talking to *api_url* (Telegram's, a self-hosted Bot API server, or
    the emulator), HTML parse mode by default."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    session.middleware(pin_response_types)
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


# aiogram reads every answer as ``Response[<the method's result type>]``, a pydantic
# generic built on first use and kept by pydantic only weakly: once the garbage collector
# takes it, the next call of that method rebuilds it (~5 ms of schema building). A busy
# bot lost milliseconds per update to that; one class per method, kept here, is enough.
_RESPONSE_TYPES: dict[type[Any], Any] = {}


async def pin_response_types(
    make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
) -> Any:
    """A session middleware holding each method's ``Response`` type for the process."""
    kind = type(method)
    if kind not in _RESPONSE_TYPES:
        _RESPONSE_TYPES[kind] = Response[method.__returning__]  # type: ignore[name-defined]
    return await make_request(bot, method)


async def open_shared(
    s: BotSettings, stack: AsyncExitStack
) -> tuple[RateLimiter, BaseStorage | None]:
    """Throttling and FSM storage in Redis when ``VPNSHOP_REDIS_URL`` is set, so replicas
    share them; in memory otherwise (None: the dispatcher's default)."""
    if s.redis_url is None:
        return MemoryRateLimiter(), None
    from aiogram.fsm.storage.redis import RedisStorage
    from redis.asyncio import Redis

    redis = Redis.from_url(s.redis_url.get())
    stack.push_async_callback(redis.aclose)
    return RedisRateLimiter(redis), RedisStorage(redis)


async def start_metrics(metrics: BotMetrics, s: BotSettings, stack: AsyncExitStack) -> str | None:
    if s.metrics_port == 0:
        return None

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    web_app = web.Application()
    web_app.router.add_get("/metrics", scrape)
    return await _listen(web_app, s.metrics_host, s.metrics_port, stack, "VPNSHOP_BOT_METRICS_PORT")


async def _listen(
    web_app: web.Application, host: str, port: int, stack: AsyncExitStack, variable: str
) -> str:
    runner = web.AppRunner(web_app, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        raise SettingUnusableError(
            variable, f"cannot listen on {host}:{port}: {e.strerror}"
        ) from None
    sockets = [s.getsockname() for s in getattr(site._server, "sockets", [])]
    bound = sockets[0][1] if sockets else port
    return f"http://{host}:{bound}"


async def poll(dp: Dispatcher, bot: Bot, stop: asyncio.Event) -> None:
    """Long polling until *stop*; then the handlers already running finish."""
    await bot.delete_webhook(drop_pending_updates=False)
    task = asyncio.create_task(
        dp.start_polling(
            bot, allowed_updates=allowed_updates(dp), handle_signals=False, close_bot_session=False
        )
    )
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        await dp.stop_polling()
    stopped.cancel()
    await task
    await drain(dp)


async def drain(dp: Dispatcher) -> None:
    # aiogram keeps the polled updates' handler tasks in this set; polling is stopped, so
    # it only shrinks.
    running: set[asyncio.Task[Any]] = set(getattr(dp, "_handle_update_tasks", set()))
    if running:
        log.info("bot stopping: %d handlers still running", len(running))
        await asyncio.wait(running, timeout=SHUTDOWN_TIMEOUT)


async def webhook(
    dp: Dispatcher, bot: Bot, settings: Settings, stop: asyncio.Event, stack: AsyncExitStack
) -> None:
    s = settings.bot
    assert s.webhook_path is not None
    assert s.webhook_secret is not None
    assert settings.public_url is not None
    web_app = web.Application()
    SimpleRequestHandler(  # handled within the request: a stop waits for it
        dp, bot, secret_token=s.webhook_secret.get(), handle_in_background=False
    ).register(web_app, path=f"/tg/{s.webhook_path.get()}")
    await _listen(web_app, s.webhook_host, s.webhook_port, stack, "VPNSHOP_BOT_WEBHOOK_PORT")
    await bot.set_webhook(
        s.webhook_url(settings.public_url),
        secret_token=s.webhook_secret.get(),
        allowed_updates=allowed_updates(dp),
    )
    log.info("bot webhook set; listening on %s:%s", s.webhook_host, s.webhook_port)
    await stop.wait()


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[Dispatcher], None] | None = None,
    app: App | None = None,
) -> None:
    """Run the bot until SIGTERM/SIGINT (or *stop* is set).

    Given an *app*, the bot is one part of a bigger process (``vpnshop run all``): the
    caller owns the App and the signals."""
    if settings.bot_token is None:
        raise SettingUnusableError("VPNSHOP_BOT_TOKEN", "is not set: the bot needs its token")
    stop = stop or asyncio.Event()
    if app is not None:
        await serve_app(app, stop, ready=ready)
        return
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with bootstrap(settings) as built:
            await serve_app(built, stop, ready=ready)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_app(
    app: App, stop: asyncio.Event, *, ready: Callable[[Dispatcher], None] | None = None
) -> None:
    """Run the bot on *app* until *stop*; the App stays open."""
    settings = app.settings
    if settings.bot_token is None:
        raise SettingUnusableError("VPNSHOP_BOT_TOKEN", "is not set: the bot needs its token")
    async with AsyncExitStack() as stack:
        limiter, storage = await open_shared(settings.bot, stack)
        metrics = BotMetrics()
        bot = make_bot(settings.bot_token.get(), settings.bot.api_url)
        stack.push_async_callback(bot.session.close)
        dp = build_dispatcher(app, settings.bot, limiter=limiter, storage=storage, metrics=metrics)
        if (url := await start_metrics(metrics, settings.bot, stack)) is not None:
            log.info("bot metrics at %s/metrics", url)
        if ready is not None:
            ready(dp)
        if settings.bot.mode == "webhook":
            await webhook(dp, bot, settings, stop, stack)
        else:
            await poll(dp, bot, stop)
        log.info("bot stopping")
    log.info("bot stopped")
