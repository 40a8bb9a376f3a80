"""What the payment gateways share: their lifetime, retries, amount limits and HMAC checks.

Private to ``vpnshop.adapters.payments``; each gateway keeps its own public API and its own
error wording (a message names the provider), so only the mechanics live here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Self, TypeVar

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from vpnshop.domain.money import Money
from vpnshop.ports.payments import (
    AmountOutOfRangeError,
    ProviderUnavailableError,
    WebhookAuthError,
    WebhookRequest,
)

T = TypeVar("T")


class TransientError(Exception):
    """Worth retrying with the same request (network, timeout, 429, 5xx, ...).

    Never leaves a gateway: :func:`call_with_retries` turns the last one into
    ``ProviderUnavailableError``.
    """


class GatewayLifetime:
    """``async with gateway:`` closes it; every gateway has the same lifetime API."""

    async def aclose(self) -> None:
        """Release what the gateway holds; a no-op unless a subclass holds something."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HttpSessionOwner(GatewayLifetime):
    """Owns one ``aiohttp.ClientSession``, created on first use and closed by ``aclose``."""

    def __init__(self, timeout_seconds: float, headers: Mapping[str, str] | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session_headers = dict(headers) if headers else None
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers=self._session_headers
            )
        return self._session


async def read_response(
    request: AbstractAsyncContextManager[aiohttp.ClientResponse], prefix: str = ""
) -> tuple[int, bytes]:
    """Send *request* and read its status and body; a network failure or timeout is a
    :class:`TransientError` (its text starts with *prefix*)."""
    try:
        async with request as resp:
            return resp.status, await resp.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise TransientError(f"{prefix}{type(exc).__name__}: {exc}") from exc


def is_transient_status(status: int) -> bool:
    """429 and 5xx: the provider may well answer the same request next time."""
    return status == 429 or status >= 500


def retrying(attempts: int, wait_initial: float, wait_max: float) -> AsyncRetrying:
    """Bounded exponential backoff that retries only :class:`TransientError`."""
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=wait_initial, max=wait_max),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )


async def call_with_retries(
    once: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    wait_initial: float,
    wait_max: float,
    unavailable: Callable[[TransientError], str],
) -> T:
    """Run *once* until it stops raising :class:`TransientError` (at most *attempts*
    times); the last such error becomes ``ProviderUnavailableError(unavailable(exc))``."""
    try:
        async for attempt in retrying(attempts, wait_initial, wait_max):
            with attempt:
                return await once()
    except TransientError as exc:
        raise ProviderUnavailableError(unavailable(exc)) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")


def check_amount(gateway_name: str, amount: Money, low: Money | None, high: Money | None) -> None:
    """Refuse a non-positive *amount* or one outside ``[low, high]`` (either may be None)
    with ``AmountOutOfRangeError``. The currency is the caller's to check first."""
    if not amount.is_positive:
        raise AmountOutOfRangeError(f"{amount} is not a positive amount")
    if low is not None and amount < low:
        raise AmountOutOfRangeError(f"{amount} is below {gateway_name}'s minimum {low}")
    if high is not None and amount > high:
        raise AmountOutOfRangeError(f"{amount} is above {gateway_name}'s maximum {high}")


def str_tuple(value: Iterable[str] | str) -> tuple[str, ...]:
    """A settings converter: ``"a, b"`` (as from the environment) or an iterable of str."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def hmac_sha256_hex(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_hmac_header(request: WebhookRequest, header: str, key: bytes) -> None:
    """Raise ``WebhookAuthError`` unless header *header* (lower case; looked up without
    regard to case) is the hex HMAC-SHA256 of the raw body keyed with *key*."""
    given = next((v for k, v in request.headers.items() if k.lower() == header), None)
    if not given:
        raise WebhookAuthError(f"missing {header} header")
    expected = hmac_sha256_hex(key, request.body)
    # Bytes, because compare_digest refuses non-ASCII str (a hostile header could be).
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise WebhookAuthError(f"{header} does not match the body")
