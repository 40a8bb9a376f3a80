"""The webhook server: provider notifications in, one use case call, the provider's answer out.

Routes (see ``docs/webhooks.md``):

* ``POST /webhooks/<provider>`` for every enabled gateway: size and content type are
  checked before the body is read; the raw body goes to ``gateway.parse_webhook``, the
  authenticated event to ``app.confirm_payment``, which commits before it returns, and only
  then is the provider's own success answer (``gateway.webhook_reply``) sent.
* ``GET /healthz`` (the process is up), ``GET /readyz`` (database, and panel when there is
  one), ``GET /metrics`` (Prometheus, this app's own registry).

Nothing here is global: the ``App`` bundle, the metrics and the settings of this server
live on the ``web.Application`` under typed ``web.AppKey`` keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import attrs
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from vpnshop.adapters.payments.netcheck import InvalidAllowlistEntryError, IpAllowlist
from vpnshop.bootstrap import App
from vpnshop.config import ConfigError
from vpnshop.domain.errors import AmountMismatchError
from vpnshop.ports.payments import (
    PaymentEvent,
    PaymentGateway,
    ProviderUnavailableError,
    WebhookAuthError,
    WebhookMalformedError,
    WebhookReply,
    WebhookRequest,
)
from vpnshop.ports.storage import StorageUnavailableError
from vpnshop.services.outcome import Outcome
from vpnshop_webhooks.deadlines import BodyDeadlines, BodyTimeoutError
from vpnshop_webhooks.metrics import CONTENT_TYPE, WebhookMetrics

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # every provider's notification is a few KiB at most
JSON = ("application/json",)
FORM = ("application/x-www-form-urlencoded",)
# What each provider sends. A new provider may instead expose a ``webhook_content_types``
# attribute on its gateway; without either, JSON is expected.
CONTENT_TYPES: Mapping[str, tuple[str, ...]] = {
    "yookassa": JSON,
    "cryptopay": JSON,
    "tribute": JSON,
    "freekassa": FORM,
}
CHECK_TIMEOUT = 3.0  # seconds for each /readyz check

BODY_TIMEOUT = 5.0  # seconds for a request's body to arrive (VPNSHOP_WEBHOOKS_BODY_TIMEOUT)
IDENTITY = ("", "identity")  # the only Content-Encoding accepted: bodies are taken as sent

# The storage adapters report an unavailable database as the port's error; this shell
# knows nothing of the driver. A provider told "503" retries later.
STORAGE_DOWN: tuple[type[BaseException], ...] = (StorageUnavailableError,)


@attrs.frozen
class ServerConfig:
    """How this server treats requests (derived from settings; tests may change it)."""

    max_body: int = MAX_BODY
    body_timeout: float = BODY_TIMEOUT
    trusted_proxies: IpAllowlist = attrs.field(factory=lambda: IpAllowlist(()))
    content_types: Mapping[str, tuple[str, ...]] = attrs.field(factory=lambda: CONTENT_TYPES)


APP_KEY = web.AppKey("vpnshop_app", App)
METRICS_KEY = web.AppKey("vpnshop_metrics", WebhookMetrics)
CONFIG_KEY = web.AppKey("vpnshop_server_config", ServerConfig)
BODIES_KEY = web.AppKey("vpnshop_body_deadlines", BodyDeadlines)


def resolve_remote_ip(peer: str | None, forwarded_for: Sequence[str], trusted: IpAllowlist) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy.

    Entries left of the first untrusted one are never believed: anyone can write them.
    """
    peer = peer or ""
    if not trusted.allows(peer):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted.allows(hop):
            return hop
    return hops[0] if hops else peer  # every hop is ours: the left-most is the closest we know


def _trusted(entries: Iterable[str]) -> IpAllowlist:
    try:
        return IpAllowlist(list(entries))
    except InvalidAllowlistEntryError as exc:
        raise ConfigError([("VPNSHOP_TRUSTED_PROXIES", str(exc))]) from None


def _reply(reply: WebhookReply) -> web.Response:
    return web.Response(status=reply.status, text=reply.body, content_type=reply.content_type)


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _content_types(config: ServerConfig, name: str, gateway: PaymentGateway) -> tuple[str, ...]:
    declared = getattr(gateway, "webhook_content_types", None)
    if declared:
        return tuple(declared)
    return config.content_types.get(name, JSON)


async def handle_webhook(request: web.Request) -> web.StreamResponse:
    """``POST /webhooks/{provider}``: authenticate, confirm (commit), then answer."""
    started = time.perf_counter()
    app = request.app[APP_KEY]
    metrics = request.app[METRICS_KEY]
    config = request.app[CONFIG_KEY]
    name = request.match_info["provider"]
    gateway = app.gateways.get(name)
    if gateway is None:
        return _plain(404, "unknown provider")
    remote_ip = resolve_remote_ip(
        request.remote, request.headers.getall("X-Forwarded-For", []), config.trusted_proxies
    )

    def done(outcome: str, response: web.Response) -> web.Response:
        metrics.webhook(name, outcome, time.perf_counter() - started)
        return response

    if request.content_type not in _content_types(config, name, gateway):
        log.warning(
            "%s webhook from %s refused: content type %s",
            name,
            remote_ip,
            shown(request.content_type),
        )
        return done("unsupported_media_type", _plain(415, "unsupported content type"))
    received = await receive_body(request, name, remote_ip)
    if isinstance(received, Refusal):
        return done(received.outcome, received.response)
    body = received

    notice = WebhookRequest(
        body=body, headers=request.headers, remote_ip=remote_ip, content_type=request.content_type
    )
    try:
        event = await gateway.parse_webhook(notice)
    except WebhookAuthError as exc:
        log.warning("%s webhook from %s unauthenticated: %s", name, remote_ip, exc)
        return done("unauthenticated", _plain(401, "unauthenticated"))
    except WebhookMalformedError as exc:
        log.warning("%s webhook from %s malformed: %s", name, remote_ip, exc)
        return done("malformed", _plain(400, "malformed notification"))
    except ProviderUnavailableError as exc:
        log.warning("%s webhook from %s: provider API unavailable: %s", name, remote_ip, exc)
        return done("provider_unavailable", _plain(503, "try again later"))

    try:
        outcome = await app.confirm_payment(event)
    except AmountMismatchError as exc:
        # Authentic, audited and reported to the admins by the use case; never credited.
        # Answer as if done so that the provider stops re-sending it.
        log.error("%s webhook from %s: amount mismatch, not credited: %s", name, remote_ip, exc)
        return done("amount_mismatch", _reply(gateway.webhook_reply))
    except STORAGE_DOWN as exc:
        log.error("%s webhook from %s: database unavailable: %s", name, remote_ip, exc)
        return done("storage_unavailable", _plain(503, "try again later"))
    if outcome is Outcome.CONFIRMED:
        _count_confirmed(metrics, name, event)
    if outcome is Outcome.UNKNOWN:
        log.warning("%s webhook from %s for a payment we do not know", name, remote_ip)
    return done(outcome.value, _reply(gateway.webhook_reply))


@attrs.frozen
class Refusal:
    """Why a request's body was not taken: the metrics outcome and the answer."""

    outcome: str
    response: web.Response


def shown(value: object, limit: int = 60) -> str:
    """A client-supplied value quoted for a log line, cut to *limit* characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


async def receive_body(request: web.Request, name: str, remote_ip: str) -> bytes | Refusal:
    """The raw body exactly as sent, or the refusal to answer instead.

    Refused before a byte is read: a ``Content-Encoding`` other than identity or a
    ``Transfer-Encoding`` other than chunked (415; a signature covers the bytes received,
    never a decoded form), and a declared length over the limit (413). While reading:
    over the limit (413), not complete within the body deadline (408), a client that
    went away or broke the framing (400, though it will rarely read it). Each refusal is
    one log line and closes the connection.
    """
    config = request.app[CONFIG_KEY]
    encoding = _coding(request, "Content-Encoding", IDENTITY) or _coding(
        request, "Transfer-Encoding", (*IDENTITY, "chunked")
    )
    if encoding:
        log.warning("%s webhook from %s refused: coding %s", name, remote_ip, shown(encoding))
        return Refusal("unsupported_encoding", _closing(415, "content encoding not accepted"))
    length = request.content_length
    if length is not None and length > config.max_body:
        log.warning("%s webhook from %s refused: body of %d bytes", name, remote_ip, length)
        return Refusal("too_large", _closing(413, "body too large"))
    try:
        # Bounded by the application's client_max_size: aiohttp stops reading and raises
        # as soon as a body without (or lying in) Content-Length grows past it.
        return await request.app[BODIES_KEY].read(request)
    except web.HTTPRequestEntityTooLarge:
        log.warning(
            "%s webhook from %s refused: body over %d bytes", name, remote_ip, config.max_body
        )
        return Refusal("too_large", _closing(413, "body too large"))
    except BodyTimeoutError as exc:
        log.warning("%s webhook from %s refused: %s", name, remote_ip, exc)
        return Refusal("body_timeout", _closing(408, "request body timed out"))
    except (ConnectionError, RequestPayloadError) as exc:
        # Ordinary client behaviour (gone mid-body, bad chunked framing): not our bug.
        log.info(
            "%s webhook from %s: body not received: %s: %s",
            name,
            remote_ip,
            type(exc).__name__,
            exc,
        )
        return Refusal("body_incomplete", _closing(400, "incomplete body"))


def _coding(request: web.Request, header: str, accepted: tuple[str, ...]) -> str:
    """The first coding named in any *header* line that is not in *accepted* ("" if none)."""
    for line in request.headers.getall(header, []):
        for coding in line.split(","):
            if coding.strip().lower() not in accepted:
                return coding.strip().lower() or line
    return ""


def _closing(status: int, text: str) -> web.Response:
    # The rest of such a request is not worth reading: answer and close the connection.
    response = _plain(status, text)
    response.force_close()
    return response


def _count_confirmed(metrics: WebhookMetrics, name: str, event: PaymentEvent) -> None:
    amount = event.amount
    if amount is None:
        metrics.confirmed(name, None, None)
    else:
        metrics.confirmed(name, amount.currency.code, amount.minor)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return _plain(200, "ok")


async def _database_ok(app: App) -> None:
    if app.engine is None:  # the in-memory store is always there
        return
    async with asyncio.timeout(CHECK_TIMEOUT), app.engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")


async def _panel_ok(app: App) -> None:
    assert app.panel is not None
    async with asyncio.timeout(CHECK_TIMEOUT):
        if not await app.panel.health():
            raise RuntimeError("the panel reports it is unhealthy")


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers ``SELECT 1`` and the panel (if any) is healthy."""
    app = request.app[APP_KEY]
    checks = {"database": _database_ok(app)}
    if app.panel is not None:
        checks["panel"] = _panel_ok(app)
    results: dict[str, str] = {}
    for check, coro in checks.items():
        try:
            await coro
            results[check] = "ok"
        except Exception as exc:  # any failure means "not ready"; say which and why
            log.warning("readiness check %s failed: %s: %s", check, type(exc).__name__, exc)
            results[check] = f"failed: {type(exc).__name__}"
    ready = all(v == "ok" for v in results.values())
    failed = [c for c, v in results.items() if v != "ok"]
    return web.json_response(
        {"status": "ok" if ready else "unavailable", "checks": results, "failed": failed},
        status=200 if ready else 503,
    )


async def pending_jobs(app: App) -> int:
    """The outbox's pending count (one indexed ``count(*)``)."""
    async with asyncio.timeout(CHECK_TIMEOUT), app.deps.uow() as uow:
        return await uow.outbox.pending_count()


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text format; the outbox gauge is read from the database now."""
    metrics = request.app[METRICS_KEY]
    try:
        metrics.outbox_pending.set(await pending_jobs(request.app[APP_KEY]))
    except Exception as exc:  # a scrape must still answer when the database is down
        log.warning("metrics: cannot count outbox jobs: %s: %s", type(exc).__name__, exc)
        metrics.outbox_pending.set(float("nan"))
    response = web.Response(body=metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An unexpected exception is a logged traceback and a bare 500, never a leaked one."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _plain(500, "internal error")


def create_app(
    app: App,
    *,
    metrics: WebhookMetrics | None = None,
    max_body: int = MAX_BODY,
    body_timeout: float | None = None,
    trusted_proxies: Iterable[str] | None = None,
    content_types: Mapping[str, tuple[str, ...]] | None = None,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """The aiohttp application for an already built *app* (its owner closes it).

    *trusted_proxies* defaults to ``app.settings.trusted_proxies`` (CIDRs), *body_timeout*
    to ``app.settings.webhooks_body_timeout`` (seconds).

    *extra_routes* is the hook for other webhook senders, e.g. the panel:
    ``create_app(app, extra_routes=[web.post("/webhooks/remnawave", handler)])``. They
    are registered before the provider route, so a fixed path wins over
    ``/webhooks/{provider}``; their handlers find the bundle as ``request.app[APP_KEY]``.
    """
    web_app = web.Application(client_max_size=max_body, middlewares=[_errors])
    web_app[APP_KEY] = app
    metrics = metrics if metrics is not None else WebhookMetrics()
    if app.settle_stats is not None:
        metrics.watch_settler(app.settle_stats)
    web_app[METRICS_KEY] = metrics
    if body_timeout is None:
        body_timeout = app.settings.webhooks_body_timeout
    bodies = BodyDeadlines(body_timeout)
    web_app[BODIES_KEY] = bodies
    web_app.on_shutdown.append(bodies.on_shutdown)  # a half-sent body never holds up a stop
    web_app[CONFIG_KEY] = ServerConfig(
        max_body=max_body,
        body_timeout=body_timeout,
        trusted_proxies=_trusted(
            app.settings.trusted_proxies if trusted_proxies is None else trusted_proxies
        ),
        content_types={**CONTENT_TYPES, **(content_types or {})},
    )
    web_app.add_routes(list(extra_routes))  # HOOK: /webhooks/remnawave is mounted here
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", metrics_view)
    web_app.router.add_post("/webhooks/{provider}", handle_webhook)
    return web_app
