"""HTTP transport to a Remnawave panel: one session, timeouts, retries, error mapping."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from vpnshop.adapters.remnawave.errors import (
    FORWARDED_HINT,
    PanelBadResponseError,
    PanelConnectionDroppedError,
    PanelRateLimitedError,
    PanelTimeoutError,
    translate_error,
)
from vpnshop.adapters.remnawave.settings import RemnawaveSettings
from vpnshop.ports.panel import PanelError, PanelUnavailableError

log = logging.getLogger(__name__)

#: The outcome of one HTTP exchange with the panel, as reported to a :data:`PanelCallObserver`:
#: ``ok`` (2xx), ``unavailable`` (not reached, timed out, 5xx, 429: retried) or ``error``
#: (any other refusal or an answer the shop cannot read).
PanelCallOutcome = Literal["ok", "unavailable", "error"]
#: Called once per HTTP request sent to the panel (each retry attempt is a request of its
#: own) with its outcome; the webhooks process counts them in ``vpnshop_panel_calls_total``.
PanelCallObserver = Callable[[PanelCallOutcome], None]


def is_transient(exc: BaseException) -> bool:
    """Retry connection failures, timeouts, dropped connections, 5xx and 429; never 4xx."""
    return isinstance(exc, PanelUnavailableError)


class _Wait(wait_base):
    """Exponential backoff with full jitter on top (``initial * 2**(n-1) + U(0, initial)``,
    capped at ``maximum``), stretched to a 429's Retry-After (also capped). *done* attempts
    came before tenacity's first (the one sent outside it)."""

    def __init__(self, initial: float, maximum: float, done: int = 0) -> None:
        self._initial = initial
        self._max = maximum
        self._done = done

    def __call__(self, retry_state: Any) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        return self.after(self._done + retry_state.attempt_number, exc)

    def after(self, n: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt *n* (1-based) that raised *exc*."""
        n = max(1, n)
        delay: float = self._initial * 2 ** min(n - 1, 30) + random.uniform(0, self._initial)
        delay = min(delay, self._max)
        hint = getattr(exc, "retry_after", None) if isinstance(exc, PanelRateLimitedError) else None
        if hint:
            delay = max(delay, min(float(hint), self._max))
        return delay


class RemnawaveClient:
    """Sends requests to ``<base_url>/api``. Owns one :class:`aiohttp.ClientSession`.

    :meth:`request` returns the ``response`` member of the panel's envelope (or ``None``
    for an empty 2xx answer such as 3.x's ``DELETE`` 204), and raises a ``PanelError``
    subclass otherwise. Transient failures are retried with exponential backoff.
    """

    def __init__(
        self, settings: RemnawaveSettings, *, on_call: PanelCallObserver | None = None
    ) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._on_call = on_call

    @property
    def started(self) -> bool:
        return self._session is not None and not self._session.closed

    def _headers(self) -> dict[str, str]:
        s = self._settings
        headers = {
            "Authorization": f"Bearer {s.token}",
            "Accept": "application/json",
            "User-Agent": s.user_agent,
        }
        if s.sends_forwarded_headers:
            headers["X-Forwarded-For"] = "127.0.0.1"
            headers["X-Forwarded-Proto"] = "https"
        if s.x_api_key:
            headers["X-Api-Key"] = s.x_api_key
        return headers

    async def start(self) -> None:
        if self.started:
            return
        s = self._settings
        connector = aiohttp.TCPConnector(ssl=s.verify_tls)
        self._session = aiohttp.ClientSession(
            headers=self._headers(),
            cookies=s.cookies or None,
            timeout=aiohttp.ClientTimeout(total=s.timeout),
            connector=connector,
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise RuntimeError("RemnawavePanel is not started: call 'await panel.start()' first")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> Any:
        s = self._settings
        attempts = s.retry_attempts if retry else 1
        # The first attempt goes out directly: a call that succeeds (nearly all) pays
        # nothing for retrying; tenacity's machinery costs ~50 us a call on these machines.
        try:
            return await self._observed(method, path, json_body, params)
        except PanelError as exc:
            if attempts <= 1 or not is_transient(exc):
                raise
            first = exc
        wait = _Wait(s.retry_initial_wait, s.retry_max_wait, done=1)
        await asyncio.sleep(wait.after(1, first))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts - 1),
            wait=wait,
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                n = attempt.retry_state.attempt_number + 1
                log.info("remnawave: retrying %s %s (attempt %d/%d)", method, path, n, attempts)
                return await self._observed(method, path, json_body, params)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _observed(
        self,
        method: str,
        path: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> Any:
        if self._on_call is None:
            return await self._once(method, path, json_body, params)
        try:
            result = await self._once(method, path, json_body, params)
        except PanelUnavailableError:
            self._on_call("unavailable")
            raise
        except PanelError:
            self._on_call("error")
            raise
        self._on_call("ok")
        return result

    async def _once(
        self,
        method: str,
        path: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> Any:
        session = self._session_or_fail()
        url = self._settings.api_root + path
        try:
            async with session.request(method, url, json=json_body, params=params) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except aiohttp.ServerDisconnectedError as exc:
            raise PanelConnectionDroppedError(
                f"the panel closed the connection without a response ({method} {path}): "
                f"{FORWARDED_HINT}"
            ) from exc
        except TimeoutError as exc:
            raise PanelTimeoutError(
                f"the panel did not answer {method} {path} within {self._settings.timeout}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise PanelUnavailableError(f"cannot reach the panel ({method} {path}): {exc}") from exc

        if 200 <= status < 300:
            if status == 204 or not raw.strip():
                return None
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise PanelBadResponseError(
                    f"the panel answered {method} {path} with HTTP {status} but not JSON; "
                    "is base_url the Remnawave panel?",
                    status=status,
                ) from exc
            if isinstance(data, dict) and "response" in data:
                return data["response"]
            raise PanelBadResponseError(
                f"the panel answered {method} {path} without the 'response' envelope",
                status=status,
            )
        err: PanelError = translate_error(
            status, raw, method=method, path=path, retry_after=retry_after
        )
        raise err
