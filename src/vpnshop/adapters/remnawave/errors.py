"""Remnawave-specific errors and the translation of panel answers into port errors."""

from __future__ import annotations

import json
from typing import Any

from vpnshop.ports.panel import (
    PanelConflictError,
    PanelError,
    PanelForbiddenError,
    PanelInvalidError,
    PanelNotFoundError,
    PanelUnauthorizedError,
    PanelUnavailableError,
)


class RemnawaveConfigError(ValueError):
    """The adapter or the webhook verifier was configured wrongly; nothing was sent."""

    code = "remnawave_config"


class PanelTimeoutError(PanelUnavailableError):
    """The panel did not answer within the configured timeout."""

    code = "panel_timeout"


class PanelConnectionDroppedError(PanelUnavailableError):
    """The panel (or something in front of it) closed the connection without an answer.

    The usual cause: Remnawave's proxy check destroys the socket of every request that
    lacks ``X-Forwarded-For`` and ``X-Forwarded-Proto: https``.
    """

    code = "panel_connection_dropped"


class PanelRateLimitedError(PanelUnavailableError):
    """HTTP 429. ``retry_after`` (seconds) is the panel's hint, when it gave one."""

    code = "panel_rate_limited"

    def __init__(
        self,
        message: str,
        *,
        vendor_code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, vendor_code=vendor_code, status=status)
        self.retry_after = retry_after


class PanelBadResponseError(PanelError):
    """The panel answered 2xx with something that is not its JSON envelope (a proxy's
    login page, for instance). Usually a wrong ``base_url``. Not retried."""

    code = "panel_bad_response"


#: 4xx business codes that mean "the panel's state conflicts with the request".
CONFLICT_CODES = frozenset({"A019", "A020", "A029", "A030", "A098"})

FORWARDED_HINT = (
    "send forwarded headers / use https: the panel drops every request that lacks "
    "'X-Forwarded-For' and 'X-Forwarded-Proto: https' (set forwarded_headers='always' when "
    "calling it over plain http, or go through the https reverse proxy)"
)


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for issue in errors[:5]:
        if not isinstance(issue, dict):
            continue
        path = ".".join(str(p) for p in issue.get("path") or []) or "<body>"
        parts.append(f"{path}: {issue.get('message', issue.get('code', '?'))}")
    return "; ".join(parts)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def translate_error(
    status: int,
    raw: bytes,
    *,
    method: str,
    path: str,
    retry_after: str | None = None,
) -> PanelError:
    """Map a non-2xx panel answer to the port's error family.

    The panel's ``errorCode`` (A025...) becomes ``vendor_code`` and its ``message``
    becomes ``vendor_message``; ``str(error)`` adds the code, status and route.
    """
    body: Any = None
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        body = None
    vendor_code: str | None = None
    panel_message = ""
    if isinstance(body, dict):
        code = body.get("errorCode")
        vendor_code = code if isinstance(code, str) else None
        msg = body.get("message")
        panel_message = msg if isinstance(msg, str) else json.dumps(msg)
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            detail = _describe_validation(errors)
            if detail:
                panel_message = f"{panel_message}: {detail}"
    else:
        panel_message = raw.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"

    where = f"HTTP {status} on {method} {path}"
    text = (
        f"{panel_message} ({vendor_code}, {where})" if vendor_code else f"{panel_message} ({where})"
    )

    err: PanelError
    if status == 401:
        err = PanelUnauthorizedError(text, vendor_code=vendor_code, status=status)
    elif status == 403:
        err = PanelForbiddenError(text, vendor_code=vendor_code, status=status)
    elif status == 404:
        err = PanelNotFoundError(text, vendor_code=vendor_code, status=status)
    elif status == 409 or (vendor_code in CONFLICT_CODES and status < 500):
        err = PanelConflictError(text, vendor_code=vendor_code, status=status)
    elif status == 429:
        err = PanelRateLimitedError(
            text, vendor_code=vendor_code, status=status, retry_after=_retry_after(retry_after)
        )
    elif status >= 500:
        err = PanelUnavailableError(text, vendor_code=vendor_code, status=status)
    else:
        err = PanelInvalidError(text, vendor_code=vendor_code, status=status)
    err.vendor_message = panel_message
    return err
