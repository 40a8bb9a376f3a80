"""A small Telegram Bot API client over aiohttp, for the processes that must not import
aiogram (the webhooks server, the scheduler, the CLI).

It calls ``{base_url}/bot{token}/{method}`` with a JSON body, or multipart form data when
a file goes along, and returns the ``result`` of ``{"ok": true}``. Every other answer
raises :class:`BotApiError` carrying the Bot API's ``error_code``, ``description`` and
``parameters``; a failure to get an answer at all raises :class:`BotApiUnavailableError`.
It never retries: what a failure means is the caller's business. The token never appears
in an error message or a log line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Self

import aiohttp
import attrs

TELEGRAM_API = "https://api.telegram.org"


class BotApiError(Exception):
    """The Bot API answered ``{"ok": false, ...}``."""

    def __init__(
        self,
        method: str,
        error_code: int,
        description: str,
        *,
        retry_after: float | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(f"{method}: {error_code} {description}")
        self.method = method
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


class BotApiUnavailableError(Exception):
    """No usable answer: connection failure, timeout, or a body that is not the Bot API's."""


def _strip_slash(url: str) -> str:
    return url.rstrip("/")


@attrs.frozen
class BotApiSettings:
    """Where the Bot API is: Telegram's, a self-hosted Bot API server, or the emulator."""

    token: str = attrs.field(repr=False)
    base_url: str = attrs.field(default=TELEGRAM_API, converter=_strip_slash)
    timeout: float = 30.0  # seconds per call


@attrs.frozen
class InputFile:
    """A file to upload with a call (multipart), e.g. a QR code PNG."""

    filename: str
    data: bytes = attrs.field(repr=False)
    content_type: str = "application/octet-stream"


def _form_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)  # nested objects travel as JSON text


class BotApiClient:
    """See the module docstring. ``async with`` (or :meth:`start` and :meth:`close`) owns
    the aiohttp session unless one is passed in."""

    def __init__(
        self, settings: BotApiSettings, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._settings = settings
        self._session = session
        self._owns_session = session is None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout)
            )

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._settings.token, "<token>")

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        files: Mapping[str, InputFile] | None = None,
    ) -> Any:
        """Call *method*; the ``result`` on success. Raises BotApiError or
        BotApiUnavailableError."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        url = f"{self._settings.base_url}/bot{self._settings.token}/{method}"
        values = {k: v for k, v in (params or {}).items() if v is not None}
        kwargs: dict[str, Any]
        if files:
            form = aiohttp.FormData()
            for key, value in values.items():
                form.add_field(key, _form_value(value))
            for key, file in files.items():
                form.add_field(
                    key, file.data, filename=file.filename, content_type=file.content_type
                )
            kwargs = {"data": form}
        else:
            kwargs = {"json": values}
        try:
            async with self._session.post(url, **kwargs) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            reason = self._redact(str(e)) or type(e).__name__
            raise BotApiUnavailableError(f"{method}: Bot API unreachable ({reason})") from None
        try:
            body = json.loads(raw)
            ok = body["ok"]
        except (ValueError, TypeError, KeyError):
            raise BotApiUnavailableError(
                f"{method}: HTTP {status} without a Bot API answer"
            ) from None
        if ok is True and "result" in body:
            return body["result"]
        parameters = body.get("parameters") or {}
        raise BotApiError(
            method,
            int(body.get("error_code") or status),
            self._redact(str(body.get("description") or f"HTTP {status}")),
            retry_after=parameters.get("retry_after"),
            migrate_to_chat_id=parameters.get("migrate_to_chat_id"),
        )
