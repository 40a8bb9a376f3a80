"""What the payment emulators share: a loopback HTTP server and the fault knobs.

Private to ``vpnshop.testing``; each emulator keeps its own public API (its own
``fail_next`` signature included) and builds its own routes in :meth:`LoopbackServer._app`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Self

import attrs
from aiohttp import web


class LoopbackServer:
    """Serves :meth:`_app` on ``127.0.0.1`` at a free port; ``async with`` starts and stops
    it. Binding port 0 lets tests run in parallel without choosing ports."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url


@attrs.define
class _Fault:
    status: int
    remaining: int
    route: str | None  # None: any route
    after_processing: bool


class FaultKnobs:
    """``latency`` (seconds before each answer), ``error_rate`` (a share of calls answering
    500, drawn from a generator seeded per emulator so a failing test replays) and a queue
    of injected failures."""

    def __init__(self, seed: int = 0) -> None:
        self.latency: float = 0.0
        self.error_rate: float = 0.0
        self._faults: list[_Fault] = []
        self._random = random.Random(seed)

    def _queue_fault(
        self, count: int, status: int, route: str | None, after_processing: bool = False
    ) -> None:
        self._faults.append(_Fault(status, count, route, after_processing))

    def _take_fault(self, route: str, after: bool = False) -> int | None:
        for fault in self._faults:
            if fault.remaining <= 0 or fault.after_processing != after:
                continue
            if fault.route is not None and fault.route != route:
                continue
            fault.remaining -= 1
            return fault.status
        return None

    async def _injected_status(self, route: str) -> int | None:
        """Wait ``latency``, then the status a failure injected before processing *route*
        answers with (a queued fault first, else an ``error_rate`` draw), or None."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        status = self._take_fault(route, after=False)
        if status is None and self.error_rate > 0 and self._random.random() < self.error_rate:
            status = 500
        return status


class RouteFaultKnobs(FaultKnobs):
    """:class:`FaultKnobs` whose failures may also strike after the call took effect."""

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        route: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Answer the next *count* calls (of *route*, e.g. ``"POST /v3/payments"``) with
        *status*; with *after_processing* the call takes effect first (a lost response)."""
        self._queue_fault(count, status, route, after_processing)
