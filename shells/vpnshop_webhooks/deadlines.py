"""Time bounds for the webhook server that aiohttp does not provide itself.

aiohttp closes idle keep-alive connections (``keepalive_timeout``) but sets no deadline for
a request's headers or its body: a client that sends half a request holds a connection
and a file descriptor for as long as it likes. Two small mechanisms close that gap:

* :class:`WebhookRunner` serves every connection through :class:`HeaderDeadline`, which
  starts a timer at the first byte of a request and closes the connection when the
  request's head is still incomplete once it fires;
* :class:`BodyDeadlines` bounds each ``request.read()`` (the handler answers 408), and
  on shutdown expires every read still waiting, so a half-sent body never holds it up.

Both read a little of aiohttp's ``RequestHandler`` state (``_messages``, ``_waiter``,
``_request_in_progress``); ``tests/integration/test_webhooks_hostile.py`` proves the
behaviour on the pinned aiohttp, so an upgrade that changes it fails there first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

LINGERING_TIME = 1.0  # seconds an unread body is drained after an answer (aiohttp: 10)


class BodyTimeoutError(Exception):
    """A request's body did not arrive within its deadline (or the server is stopping)."""


class BodyDeadlines:
    """``await deadlines.read(request)``: the body, or :class:`BodyTimeoutError` after
    *timeout* seconds. :meth:`expire_all` ends every read still waiting (shutdown)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting: set[asyncio.Timeout] = set()

    async def read(self, request: web.BaseRequest) -> bytes:
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                self._waiting.add(deadline)
                try:
                    return await request.read()
                finally:
                    self._waiting.discard(deadline)
        except TimeoutError:
            raise BodyTimeoutError(f"body not complete within {self.timeout:g} s") from None

    def expire_all(self) -> None:
        now = asyncio.get_running_loop().time()
        for deadline in list(self._waiting):
            deadline.reschedule(now)

    async def on_shutdown(self, _: web.Application) -> None:
        self.expire_all()


class HeaderDeadline(asyncio.Protocol):
    """Wraps one connection's aiohttp ``RequestHandler``; closes the connection when a
    request's headers are not complete *timeout* seconds after its first byte."""

    def __init__(self, inner: RequestHandler, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._peer = transport.get_extra_info("peername")
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        # Body bytes of a request being handled are the body deadline's business.
        if self._timer is None and data and not inner._request_in_progress:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expired)
        inner.data_received(data)
        if self._timer is not None and inner._messages:  # a complete head was parsed
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        waiter = self._inner._waiter
        if waiter is not None and not waiter.done():  # still waiting for a whole request
            host = self._peer[0] if isinstance(self._peer, tuple) else self._peer
            log.info(
                "closed a connection from %s: request headers not complete within %g s",
                host,
                self._timeout,
            )
            self._inner.force_close()

    def eof_received(self) -> bool | None:
        self._inner.eof_received()
        return None  # close the transport on EOF, as aiohttp's handler does

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _Factory:
    """What ``loop.create_server`` calls once per connection."""

    def __init__(self, server: web.Server, header_timeout: float) -> None:
        self._server = server
        self._header_timeout = header_timeout

    def __call__(self) -> HeaderDeadline:
        return HeaderDeadline(self._server(), self._header_timeout)


class WebhookRunner(web.AppRunner):
    """An ``AppRunner`` whose sites serve every connection through :class:`HeaderDeadline`.

    Also: keep-alive connections close after *keepalive_timeout* idle seconds; bodies are
    never decompressed (``auto_decompress=False``: a signature covers the bytes as sent,
    and the handlers refuse any ``Content-Encoding`` before reading); an unread body is
    drained for at most :data:`LINGERING_TIME` after the answer.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        keepalive_timeout: float,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("lingering_time", LINGERING_TIME)
        super().__init__(app, keepalive_timeout=keepalive_timeout, auto_decompress=False, **kwargs)
        self._header_timeout = header_timeout

    @property
    def server(self) -> Any:
        inner = super().server
        return None if inner is None else _Factory(inner, self._header_timeout)
