"""``POST /webhooks/remnawave``: the panel's signed webhooks.

Mounted through ``create_app(..., extra_routes=panel_routes(app))`` and only when
``VPNSHOP_PANEL_WEBHOOK_SECRET`` is set: without a secret the route does not exist (404);
an unverified panel webhook is never accepted.

Answers: 401 for a bad or missing signature (logged), 400 for a stale or malformed
delivery, 200 for a replay, for events the shop ignores and for users it does not own,
200 after ``HandlePanelEvent`` committed, 503 when the database is down and 500 only for
a bug of ours (logged with its traceback); bodies are received as for the payment routes
(``receive_body``: 415 for any Content-Encoding, 413, 408). After a failure the delivery
is forgotten by the verifier so that the panel's retry is processed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from vpnshop.bootstrap import App
from vpnshop.domain.panel_events import (
    PanelWebhookError,
    ReplayedWebhookError,
    WebhookSignatureError,
)
from vpnshop.ports.panel import PanelWebhookVerifier
from vpnshop.services.panel_events import HandlePanelEvent
from vpnshop_webhooks.app import (
    CONFIG_KEY,
    METRICS_KEY,
    STORAGE_DOWN,
    Refusal,
    _plain,
    receive_body,
    resolve_remote_ip,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/remnawave"
NAME = "remnawave"


def panel_routes(app: App) -> list[web.AbstractRouteDef]:
    """The panel webhook route when the panel and its webhook secret are configured
    (the App then has a verifier); otherwise none (the path then answers 404)."""
    verifier, handle = app.panel_webhooks, app.handle_panel_event
    if verifier is None or handle is None:
        return []
    return [web.post(PATH, make_handler(verifier, handle))]


def make_handler(
    verifier: PanelWebhookVerifier, handle: HandlePanelEvent
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def remnawave_webhook(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        metrics = request.app[METRICS_KEY]
        config = request.app[CONFIG_KEY]
        remote_ip = resolve_remote_ip(
            request.remote, request.headers.getall("X-Forwarded-For", []), config.trusted_proxies
        )

        def done(outcome: str, status: int, text: str) -> web.Response:
            metrics.webhook(NAME, outcome, time.perf_counter() - started)
            return _plain(status, text)

        received = await receive_body(request, NAME, remote_ip)
        if isinstance(received, Refusal):
            metrics.webhook(NAME, received.outcome, time.perf_counter() - started)
            return received.response
        body = received
        try:
            event = verifier.parse(body, request.headers)
        except ReplayedWebhookError:
            return done("replayed", 200, "ok")
        except WebhookSignatureError as exc:
            log.warning("remnawave webhook from %s unauthenticated: %s", remote_ip, exc)
            return done("unauthenticated", 401, "unauthenticated")
        except PanelWebhookError as exc:
            log.warning("remnawave webhook from %s refused: %s", remote_ip, exc)
            return done("malformed", 400, "malformed notification")
        try:
            result = await handle(event)
        except STORAGE_DOWN as exc:
            verifier.forget(event.dedupe_key)
            log.error("remnawave webhook %s: database unavailable: %s", event.name, exc)
            return done("storage_unavailable", 503, "try again later")
        except Exception:
            verifier.forget(event.dedupe_key)
            log.exception("remnawave webhook %s: handling failed", event.name)
            return done("error", 500, "internal error")
        return done(str(result.outcome), 200, "ok")

    return remnawave_webhook
