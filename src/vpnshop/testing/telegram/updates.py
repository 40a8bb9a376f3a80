"""How updates reach the bot: ``getUpdates`` (offsets, long polling, one poller at a time)
or a webhook (POSTs with the secret header, retried until the bot answers 2xx).

As on Telegram, a newer ``getUpdates`` terminates a pending one, which answers 409
"Conflict: terminated by other getUpdates request"; ``getUpdates`` while a webhook is set
answers 409 too. ``allowed_updates`` persists until a call names another list; by
default every kind but ``chat_member`` and the reactions is delivered. An update of a
kind not allowed is dropped when its turn comes, as Telegram drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs

from vpnshop.testing.telegram.state import now_ts
from vpnshop.testing.telegram.wire import ApiError, Params, bad_request

log = logging.getLogger(__name__)

DEFAULT_EXCLUDED = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
CONFLICT_POLLER = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
SECRET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

# Runs a method the bot named in its answer to a webhook POST.
WebhookReply = Callable[[str, Params], Awaitable[Any]]


def kind_of(update: dict[str, Any]) -> str:
    return next(k for k in update if k != "update_id")


@attrs.define
class Delivery:
    """One webhook POST: the update, the attempt (1-based) and how it ended."""

    update_id: int
    attempt: int
    status: int | None  # None: no HTTP answer
    error: str | None = None
    secret_header: str | None = None


@attrs.define
class Webhook:
    url: str
    secret_token: str | None
    max_connections: int = 40


class UpdateFeed:
    """The pending updates of one bot and the two ways to hand them over."""

    def __init__(self, reply: WebhookReply) -> None:
        self.pending: list[dict[str, Any]] = []
        self.allowed: frozenset[str] | None = None
        self.webhook: Webhook | None = None
        self.deliveries: list[Delivery] = []
        # Pauses between webhook attempts; Telegram backs off for minutes, tests cannot.
        self.retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
        self.last_error: tuple[int, str] | None = None
        self._next_id = 1
        self._new = asyncio.Event()
        self._poller: asyncio.Future[None] | None = None
        self._deliverer: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reply = reply

    def push(self, update: dict[str, Any]) -> int:
        """Queue *update* (without ``update_id``); returns the id it was given."""
        update_id = self._next_id
        self._next_id += 1
        self.pending.append({"update_id": update_id, **update})
        self._new.set()
        self._new = asyncio.Event()
        return update_id

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = kind_of(update)
        if self.allowed is None:
            return kind not in DEFAULT_EXCLUDED
        return kind in self.allowed

    def _take_deliverable(self) -> list[dict[str, Any]]:
        self.pending = [u for u in self.pending if self._allowed(u)]
        return self.pending

    def _set_allowed(self, params: Params) -> None:
        allowed = params.json("allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise bad_request("can't parse allowed_updates JSON array")
            self.allowed = frozenset(allowed) if allowed else None

    # -- getUpdates ---------------------------------------------------------------------

    async def get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = params.integer("offset", 0) or 0
        limit = min(max(params.integer("limit", 100) or 100, 1), 100)
        timeout = max(params.integer("timeout", 0) or 0, 0)
        self._set_allowed(params)
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(None)
        loop = asyncio.get_running_loop()
        me: asyncio.Future[None] = loop.create_future()
        self._poller = me
        try:
            if offset > 0:
                self.pending = [u for u in self.pending if u["update_id"] >= offset]
            elif offset < 0:
                self.pending = self.pending[offset:]
            deadline = loop.time() + timeout
            while True:
                batch = self._take_deliverable()[:limit]
                remaining = deadline - loop.time()
                if batch or remaining <= 0:
                    return batch
                new: asyncio.Future[Any] = asyncio.ensure_future(self._new.wait())
                waiting: set[asyncio.Future[Any]] = {new, me}
                await asyncio.wait(waiting, timeout=remaining, return_when="FIRST_COMPLETED")
                new.cancel()
                if me.done():
                    raise ApiError(409, CONFLICT_POLLER)
        finally:
            if self._poller is me:
                self._poller = None

    # -- webhook --------------------------------------------------------------------------

    async def set_webhook(self, params: Params) -> bool:
        url = params.string("url") or ""
        if not url:
            await self.delete_webhook(params)
            return True
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.string("secret_token")
        if secret is not None and (not 1 <= len(secret) <= 256 or set(secret) - SECRET_CHARS):
            raise bad_request("secret token contains unallowed characters")
        self._set_allowed(params)
        if params.flag("drop_pending_updates"):
            self.pending.clear()
        self.webhook = Webhook(url, secret, params.integer("max_connections", 40) or 40)
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(None)
        if self._deliverer is None or self._deliverer.done():
            self._deliverer = asyncio.create_task(self._deliver_forever())
        return True

    async def delete_webhook(self, params: Params) -> bool:
        self.webhook = None
        if params.flag("drop_pending_updates"):
            self.pending.clear()
        self._new.set()  # wake the deliverer so that it sees the webhook is gone
        self._new = asyncio.Event()
        return True

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook.url if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.max_connections
        if self.allowed is not None:
            info["allowed_updates"] = sorted(self.allowed)
        if self.last_error is not None:
            info["last_error_date"], info["last_error_message"] = self.last_error
        return info

    def release_pollers(self) -> None:
        """Answer a pending long poll now (409), so that the server can stop at once."""
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(None)

    async def close(self) -> None:
        self.release_pollers()
        if self._deliverer is not None:
            self._deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deliverer
            self._deliverer = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver_forever(self) -> None:
        self._session = self._session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30)
        )
        while self.webhook is not None:
            batch = self._take_deliverable()
            if not batch:
                await self._new.wait()
                continue
            update = batch[0]
            if await self._deliver(self.webhook, update):
                with contextlib.suppress(ValueError):
                    self.pending.remove(update)

    async def _deliver(self, hook: Webhook, update: dict[str, Any]) -> bool:
        """POST *update* until a 2xx answer; False when Telegram gives up on it."""
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        body = json.dumps(update)
        for attempt in range(1, len(self.retry_delays) + 2):
            if self.webhook is not hook:
                return False  # replaced or deleted: the update stays pending
            delivery = Delivery(update["update_id"], attempt, None, None, hook.secret_token)
            self.deliveries.append(delivery)
            try:
                async with self._session.post(hook.url, data=body, headers=headers) as resp:
                    delivery.status = resp.status
                    answer = await resp.read()
                    if 200 <= resp.status < 300:
                        await self._run_reply(answer)
                        return True
                    delivery.error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
            except (aiohttp.ClientError, TimeoutError) as e:
                delivery.error = f"Connection failed: {type(e).__name__}"
            self.last_error = (now_ts(), delivery.error or "")
            if attempt <= len(self.retry_delays):
                await asyncio.sleep(self.retry_delays[attempt - 1])
        log.warning("webhook gave up on update %s", update["update_id"])
        return True  # given up: Telegram drops the update

    async def _run_reply(self, answer: bytes) -> None:
        """A bot may answer a webhook POST with a method call (``{"method": ...}``)."""
        try:
            body = json.loads(answer) if answer.strip() else None
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            method = body.pop("method")
            try:
                await self._reply(method, Params(body))
            except ApiError as e:
                log.info("method %s in a webhook answer failed: %s", method, e)
