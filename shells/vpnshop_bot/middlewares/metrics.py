"""Counts each handled update by type and handler, and times the handler (inner: it
runs around the handler aiogram chose, so the handler's name is known)."""

from __future__ import annotations

import time
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.types import TelegramObject

from vpnshop_bot.metrics import BotMetrics
from vpnshop_bot.middlewares.registration import Handler


class MetricsMiddleware(BaseMiddleware):
    def __init__(self, metrics: BotMetrics) -> None:
        self.metrics = metrics
        # (type, handler) -> its counter and histogram: ``labels()`` takes a lock and
        # builds a key on every call; the pairs are few (one per handler and type).
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        chosen: HandlerObject | None = data.get("handler")
        name = getattr(chosen.callback, "__name__", "?") if chosen is not None else "?"
        kind = type(event).__name__
        started = time.perf_counter()
        try:
            return await handler(event, data)
        except Exception:
            self.metrics.errors.labels(kind).inc()
            raise
        finally:
            elapsed = time.perf_counter() - started
            children = self._children.get((kind, name))
            if children is None:
                m = self.metrics
                children = self._children[(kind, name)] = (
                    m.updates.labels(kind, name),
                    m.latency.labels(kind, name),
                )
            children[0].inc()
            children[1].observe(elapsed)
