"""The emulator's state and what every part of it shares."""

from __future__ import annotations

import asyncio
import random
import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from vpnshop.testing.remnawave.index import UserTable
from vpnshop.testing.remnawave.issues import _Issues
from vpnshop.testing.remnawave.model import (
    _SHORT,
    EmuSquad,
    EmuUser,
    RecordedRequest,
    SentWebhook,
    _ApiError,
    _Ctx,
    _Fault,
    _ms,
    _rand,
    _Route,
    _version,
    iso,
)


class _Base:
    """State, version features, the clock, the user lookups and the error answers that
    every part of the emulator shares; the parts are mixins over this base."""

    def __init__(
        self,
        version: str = "3.3.2",
        *,
        token: str = "emulator-token",  # noqa: S107 (a test token)
        token_scopes: list[str] | None = None,
        require_forwarded_headers: bool = True,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_attempts: int = 3,
        webhook_retry_delay: float = 5.0,
        duplicate_username_code: str = "A019",
        sub_public_domain: str = "panel.example.test/api/sub",
        default_squad_uuid: str | None = None,
        first_id: int = 1,
        clock: Any = None,
        auto_expire: bool = True,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if duplicate_username_code not in ("A019", "A018"):
            raise ValueError("duplicate_username_code is 'A019' (stock) or 'A018' (local build)")
        self.version = version
        self.v = _version(version)
        self.tokens: dict[str, list[str]] = {token: list(token_scopes or ["*"])}
        self.token = token
        self.require_forwarded_headers = require_forwarded_headers
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_attempts = webhook_attempts
        self.webhook_retry_delay = webhook_retry_delay
        self.duplicate_username_code = duplicate_username_code
        self.sub_public_domain = sub_public_domain
        self.auto_expire = auto_expire
        self._clock = clock
        self._rng = random.Random(seed)
        self._host, self._port = host, port

        # fault knobs
        self.error_rate = 0.0
        self.latency = 0.0
        self.down = False
        self.drop_connections = False
        self._hang = False
        self._released = asyncio.Event()
        self._released.set()
        self._faults: list[_Fault] = []

        # state
        self._next_id = first_id
        self.users_by_id = UserTable()
        now = self.now()
        self.squads: list[EmuSquad] = [
            EmuSquad(default_squad_uuid or str(uuidlib.uuid4()), "Default-Squad", 1, now)
        ]
        self.external_squads: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.webhooks: list[SentWebhook] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._last_tick = self._tick_floor(now)
        self._started_at = now

        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self._routes = self._build_routes()

    def _build_routes(self) -> list[_Route]:
        raise NotImplementedError  # the assembled emulator knows every handler

    # -- features by version ----------------------------------------------------------
    @property
    def line3(self) -> bool:
        return self.v >= (3, 0, 0)

    @property
    def v4_issues(self) -> bool:
        return self.line3

    @property
    def default_squad_uuid(self) -> str:
        return self.squads[0].uuid

    def has(self, since: tuple[int, int, int], before: tuple[int, int, int] | None = None) -> bool:
        return self.v >= since and (before is None or self.v < before)

    # -- time -------------------------------------------------------------------------
    def now(self) -> datetime:
        if self._clock is None:
            value = datetime.now(UTC)
        elif hasattr(self._clock, "now"):
            value = self._clock.now()
        else:
            value = self._clock()
        return _ms(value)

    @staticmethod
    def _tick_floor(value: datetime) -> datetime:
        return value.replace(second=0 if value.second < 30 else 30, microsecond=0)

    @staticmethod
    def _json(status: int, body: Any) -> web.Response:
        return web.json_response(body, status=status)

    def _not_found(self, request: web.Request) -> web.Response:
        return self._json(
            404,
            {
                "message": f"Cannot {request.method} {request.path}",
                "error": "Not Found",
                "statusCode": 404,
            },
        )

    def _biz_body(self, request: web.Request, code: str, message: str) -> dict[str, Any]:
        return {
            "timestamp": iso(self.now()),
            "path": request.path_qs,
            "message": message,
            "errorCode": code,
        }

    def _biz(self, ctx: _Ctx, status: int, code: str, message: str) -> _ApiError:
        return _ApiError(status, self._biz_body(ctx.request, code, message))

    def _invalid(self, issues: _Issues) -> _ApiError:
        return _ApiError(
            400, {"statusCode": 400, "message": "Validation failed", "errors": issues.items}
        )

    def _ok(self, payload: Any, status: int = 200) -> web.Response:
        return self._json(status, {"response": payload})

    # -- lookups ----------------------------------------------------------------------
    def _by_key(self, key: str) -> EmuUser | None:
        if self.line3:
            try:
                return self.users_by_id.get(int(key))
            except ValueError:
                return None
        return self.users_by_id.by_uuid(key)

    def _by_username(self, username: str) -> EmuUser | None:
        return self.users_by_id.by_username(username)

    def _by_short(self, short: str) -> EmuUser | None:
        return self.users_by_id.by_short_uuid(short)

    def key_of(self, user: EmuUser) -> str:
        """The user's API key on this version (id on 3.x, uuid on 2.x)."""
        return str(user.id) if self.line3 else user.uuid

    # -- state changes ----------------------------------------------------------------
    def _allocate_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _new_short_uuid(self) -> str:
        while True:
            candidate = _rand(_SHORT, 16)
            if self._by_short(candidate) is None:
                return candidate

    def _squads_exist(self, uuids: list[str]) -> bool:
        known = {s.uuid for s in self.squads}
        return all(u in known for u in uuids)

    def _regenerate_credentials(self, user: EmuUser) -> None:
        user.trojan_password = _rand(_SHORT, 32)
        user.vless_uuid = str(uuidlib.uuid4())
        user.ss_password = _rand(_SHORT, 32)

    def _user_or_404(self, ctx: _Ctx, key: str, code: str = "A025") -> EmuUser:
        user = self._by_key(key)
        if user is None:
            message = "User not found" if code == "A025" else "User with specified params not found"
            raise self._biz(ctx, 404, code, message)
        return user
