"""Signed webhooks (built, recorded, delivered with retries) and the expiry scheduler
that emits them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import aiohttp

from vpnshop.testing.remnawave.model import (
    _MISSING,
    EmuDevice,
    EmuUser,
    SentWebhook,
    iso,
)
from vpnshop.testing.remnawave.rendering import _Rendering


class _Webhooks(_Rendering):
    """Webhooks for every change, and the 30 s expiry job that produces some of them."""

    def _payload(self, scope: str, event: str, data: Any, meta: Any = _MISSING) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if self.v >= (2, 5, 0):
            payload["scope"] = scope
        payload["event"] = event
        payload["timestamp"] = iso(self.now())
        payload["data"] = data
        if meta is not _MISSING and self.v >= (2, 4, 0):
            payload["meta"] = meta
        return payload

    def _emit_user(self, event: str, user: EmuUser, meta: Any = None) -> SentWebhook:
        return self._emit(self._payload("user", event, self.render_user(user), meta))

    def _emit_device(self, event: str, user: EmuUser, device: EmuDevice) -> SentWebhook:
        rendered = self.render_user(user)
        if self.line3:
            # Observed on 3.3.2: the HWID events carry the user without its squads.
            rendered["activeInternalSquads"] = []
        data = {"hwidUserDevice": self.render_device(user, device), "user": rendered}
        return self._emit(self._payload("user_hwid_devices", event, data))

    def _emit(self, payload: dict[str, Any]) -> SentWebhook:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "Remnawave"}
        if self.webhook_secret:
            headers["X-Remnawave-Signature"] = hmac.new(
                self.webhook_secret.encode("utf-8"), body, hashlib.sha256
            ).hexdigest()
        headers["X-Remnawave-Timestamp"] = payload["timestamp"]
        sent = SentWebhook(event=payload["event"], body=body, headers=headers, payload=payload)
        self.webhooks.append(sent)
        if self.webhook_url and self._session is not None:
            task = asyncio.get_running_loop().create_task(self._deliver(sent))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        return sent

    async def _deliver(self, sent: SentWebhook) -> None:
        assert self._session is not None
        assert self.webhook_url
        for attempt in range(1, self.webhook_attempts + 1):
            sent.attempts = attempt
            try:
                async with self._session.post(
                    self.webhook_url,
                    data=sent.body,
                    headers=sent.headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    sent.status = resp.status
                    await resp.read()
                    if 200 <= resp.status < 300:
                        sent.error = None
                        return
                    sent.error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                sent.error = repr(exc)
            if attempt < self.webhook_attempts:
                await asyncio.sleep(self.webhook_retry_delay)

    async def flush_webhooks(self) -> None:
        """Wait until every pending webhook delivery finished (or gave up)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    def events(self) -> list[str]:
        return [w.event for w in self.webhooks]

    def _run_scheduler(self) -> None:
        """The panel's 30 s cron: expire ACTIVE users whose expiry is at or before the
        latest tick. Evaluated lazily (on each request and helper call)."""
        if not self.auto_expire:
            return
        tick = self._tick_floor(self.now())
        if tick <= self._last_tick:
            return
        self._last_tick = tick
        self._expire(tick)

    def _expire(self, until: datetime) -> list[EmuUser]:
        expired = []
        for user in sorted(self.users_by_id.values(), key=lambda u: u.id):
            if user.status == "ACTIVE" and user.expire_at <= until:
                user.status = "EXPIRED"
                user.updated_at = self.now()
                self._emit_user("user.expired", user)
                expired.append(user)
        return expired
