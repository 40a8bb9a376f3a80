"""The emulated Bot API server: routing, authentication, rate limits and injected faults.

``POST|GET /bot<token>/<method>`` runs a method from :data:`METHODS` (names are
case-insensitive, as on Telegram); ``GET /file/bot<token>/<file_path>`` serves stored
files. A wrong token answers 401 "Unauthorized", an unknown method 404 "Not Found".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from typing import Any

import attrs
from aiohttp import web

from vpnshop.testing._emulator import LoopbackServer
from vpnshop.testing.telegram import bot_methods, methods, payments  # noqa: F401 (register)
from vpnshop.testing.telegram.payments import PRE_CHECKOUT_TIMEOUT, Invoice
from vpnshop.testing.telegram.registry import METHODS, SENDING
from vpnshop.testing.telegram.state import (
    Account,
    CallbackQuery,
    Chat,
    PreCheckout,
    StarPayment,
    StoredFile,
)
from vpnshop.testing.telegram.updates import UpdateFeed
from vpnshop.testing.telegram.user import TgUser
from vpnshop.testing.telegram.wire import (
    ApiError,
    Params,
    bad_request,
    error_response,
    forbidden,
    ok_response,
    read_params,
)

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "123456:TEST-emulator-token"


@attrs.define
class RateLimits:
    """Telegram's flood limits, enforced when set: sends per chat per second and per bot
    per second. Over a limit the call answers 429 with the seconds left in the window."""

    per_chat: int | None = 1
    per_bot: int | None = 30
    window: float = 1.0


@attrs.frozen
class Call:
    """A method call as the emulator received it, and the error it answered, if any."""

    method: str
    params: Params
    error: ApiError | None


@attrs.define
class _Fault:
    error: ApiError
    remaining: int
    method: str | None


class TelegramEmulator(LoopbackServer):
    """A Telegram Bot API for one bot, on ``127.0.0.1``; see the package docstring."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "vpnshop_test_bot",
        bot_name: str = "VPN shop",
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        self.accounts: dict[int, Account] = {}
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.callback_queries: dict[str, CallbackQuery] = {}
        self.pre_checkouts: dict[str, PreCheckout] = {}
        self.star_payments: dict[str, StarPayment] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.descriptions: dict[str, str | None] = {}
        self.calls: list[Call] = []
        self.feed = UpdateFeed(self.call)
        self.rate_limits: RateLimits | None = None
        self.invoice_links: dict[str, Invoice] = {}
        self.callback_answer_timeout = 15.0  # seconds, after which an answer is "too old"
        self.pre_checkout_timeout = PRE_CHECKOUT_TIMEOUT
        self.emit_refund_updates = True
        self._sent: dict[str | None, deque[float]] = {}
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        return app

    async def close(self) -> None:
        await self.feed.close()  # first: a pending long poll would hold up the shutdown
        await super().close()

    @property
    def api_url(self) -> str:
        """The base URL to give a client (aiogram's ``TelegramAPIServer.from_base``)."""
        return self.base_url

    def new_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._ids)}"

    # -- test-side set-up ---------------------------------------------------------------

    def add_account(self, user_id: int, first_name: str = "Test", **fields: Any) -> Account:
        account = Account(user_id, first_name, **fields)
        self.accounts[user_id] = account
        return account

    def user(
        self,
        user_id: int,
        first_name: str = "Test",
        *,
        language_code: str | None = "en",
        **fields: Any,
    ) -> TgUser:
        """A user who can talk to the bot (made on first use; ``fields`` as on Account)."""
        account = self.accounts.get(user_id)
        if account is None:
            account = self.add_account(user_id, first_name, language_code=language_code, **fields)
        return TgUser(self, account)

    def add_chat(self, chat_id: int, type: str = "supergroup", **fields: Any) -> Chat:
        """A group or channel the bot is a member (or admin) of."""
        chat = Chat(chat_id, type, **fields)
        self.chats[chat_id] = chat
        return chat

    def private_chat(self, account: Account) -> Chat:
        chat = self.chats.get(account.id)
        if chat is None:
            chat = self.chats[account.id] = Chat(account.id, "private")
        return chat

    def throttle_next(
        self, retry_after: int = 1, count: int = 1, *, method: str | None = None
    ) -> None:
        """Answer the next *count* calls (of *method*) with 429 and *retry_after*."""
        error = ApiError(
            429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
        )
        self._faults.append(_Fault(error, count, method and method.lower()))

    def fail_next(
        self,
        count: int = 1,
        error_code: int = 500,
        description: str = "Internal Server Error",
        *,
        method: str | None = None,
    ) -> None:
        """Answer the next *count* calls (of *method*) with an error of your choice."""
        error = ApiError(error_code, description)
        self._faults.append(_Fault(error, count, method and method.lower()))

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method.lower()]

    def file_bytes(self, file_id: str) -> bytes:
        stored = self.files[file_id]
        if stored.data is None:
            raise KeyError(f"file {file_id} was given by URL and has no bytes")
        return stored.data

    # -- the helpers methods share --------------------------------------------------------

    def resolve_chat(self, chat_ref: int | str) -> Chat:
        """The chat a bot may send to, or the Bot API's error for it."""
        if isinstance(chat_ref, str):
            by_name = [c for c in self.chats.values() if f"@{c.username}" == chat_ref]
            if not by_name:
                raise bad_request("chat not found")
            return by_name[0]
        account = self.accounts.get(chat_ref)
        if account is not None:
            if account.deactivated:
                raise forbidden("user is deactivated")
            if account.blocked:
                raise forbidden("bot was blocked by the user")
            if not account.started:
                raise forbidden("bot can't initiate conversation with a user")
            return self.private_chat(account)
        chat = self.chats.get(chat_ref)
        if chat is None or chat.type == "private":
            raise bad_request("chat not found")
        if chat.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=chat.migrated_to,
            )
        return chat

    def chat_json(self, chat: Chat) -> dict[str, Any]:
        return chat.to_json(self.accounts.get(chat.id) if chat.type == "private" else None)

    def message_json(self, chat: Chat, message_id: int) -> dict[str, Any]:
        message = chat.messages[message_id]
        photo = None
        if message.photo_file_id is not None:
            stored = self.files[message.photo_file_id]
            photo = [
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": stored.width,
                    "height": stored.height,
                    **({"file_size": len(stored.data)} if stored.data is not None else {}),
                }
            ]
        return message.to_json(self.chat_json(chat), photo)

    # -- HTTP -----------------------------------------------------------------------------

    async def call(self, method: str, params: Params) -> Any:
        """Run *method* as if a client had called it; raises :class:`ApiError`."""
        method = method.lower()
        handler = METHODS.get(method)
        if handler is None:
            raise ApiError(404, "Not Found")
        error: ApiError | None = None
        try:
            self._injected(method)
            if method in SENDING:
                self._rate_limit(params)
            return await handler(self, params)
        except ApiError as e:
            error = e
            raise
        finally:
            self.calls.append(Call(method, params, error))

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return error_response(ApiError(401, "Unauthorized"))
        try:
            params = await read_params(request)
            return ok_response(await self.call(request.match_info["method"], params))
        except ApiError as e:
            return error_response(e)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return error_response(ApiError(401, "Unauthorized"))
        stored = self.files.get(request.match_info["path"].removeprefix("photos/"))
        if stored is None or stored.data is None:
            return error_response(ApiError(404, "Not Found"))
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _injected(self, method: str) -> None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                raise fault.error

    def _rate_limit(self, params: Params) -> None:
        limits = self.rate_limits
        if limits is None:
            return
        now = asyncio.get_running_loop().time()
        chat_key = params.string("chat_id")
        checks: list[tuple[str | None, int | None]] = [(None, limits.per_bot)]
        if chat_key is not None:
            checks.append((chat_key, limits.per_chat))
        for key, limit in checks:
            if limit is None:
                continue
            sent = self._sent.setdefault(key, deque())
            while sent and sent[0] <= now - limits.window:
                sent.popleft()
            if len(sent) >= limit:
                wait = max(1, math.ceil(sent[0] + limits.window - now))
                raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        for key, limit in checks:
            if limit is not None:
                self._sent[key].append(now)
