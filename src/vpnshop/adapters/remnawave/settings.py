"""Configuration of the Remnawave adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from vpnshop.adapters.remnawave.errors import RemnawaveConfigError
from vpnshop.domain.errors import ValidationError
from vpnshop.domain.panel import SHOP_TAG_PATTERN, render_username
from vpnshop.domain.panel import check_username_template as check_template


def _check_base_url(_inst: Any, _attr: Any, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemnawaveConfigError(
            f"base_url must be an http(s) URL such as https://panel.example.com, got {value!r}"
        )


def _check_token(_inst: Any, _attr: Any, value: str) -> None:
    if not value or not value.strip():
        raise RemnawaveConfigError("the Remnawave API token is empty")


def _check_shop_tag(_inst: Any, _attr: Any, value: str) -> None:
    if not SHOP_TAG_PATTERN.match(value):
        raise RemnawaveConfigError(
            f"shop_tag must match ^[A-Z0-9_]{{1,16}}$ (a Remnawave user tag), got {value!r}"
        )


def _check_choice(*choices: str) -> Any:
    def check(_inst: Any, attr: Any, value: str) -> None:
        if value not in choices:
            raise RemnawaveConfigError(f"{attr.name} must be one of {choices}, got {value!r}")

    return check


def _check_positive(_inst: Any, attr: Any, value: float) -> None:
    if value <= 0:
        raise RemnawaveConfigError(f"{attr.name} must be positive, got {value!r}")


def _check_non_negative(_inst: Any, attr: Any, value: float) -> None:
    if value < 0:
        raise RemnawaveConfigError(f"{attr.name} cannot be negative, got {value!r}")


def _check_attempts(_inst: Any, _attr: Any, value: int) -> None:
    if value < 1:
        raise RemnawaveConfigError(
            f"retry_attempts counts the first try and must be >= 1, got {value}"
        )


def _cookies(value: Mapping[str, str] | None) -> dict[str, str] | None:
    return dict(value) if value is not None else None


def check_username_template(template: str) -> None:
    """The domain's rule (``vpnshop.domain.panel.check_username_template``), as a
    configuration error of this adapter."""
    try:
        check_template(template)
    except ValidationError as exc:
        raise RemnawaveConfigError(str(exc)) from exc


@attrs.frozen
class RemnawaveSettings:
    """Everything the adapter needs to talk to one Remnawave panel.

    ``base_url`` is the panel's root (``https://panel.example.com``); ``/api`` is
    appended unless it is already there. Secrets (``token``, ``x_api_key``, ``cookies``)
    never appear in ``repr``.

    ``forwarded_headers``: ``"auto"`` sends ``X-Forwarded-For: 127.0.0.1`` and
    ``X-Forwarded-Proto: https`` when ``base_url`` is plain http (a direct call to the
    panel container, which otherwise drops the connection), ``"always"``/``"never"`` force it.
    """

    base_url: str = attrs.field(validator=_check_base_url)
    token: str = attrs.field(repr=False, validator=_check_token)
    api_line: str = attrs.field(default="auto", validator=_check_choice("auto", "2", "3"))
    shop_tag: str = attrs.field(default="VPNSHOP", validator=_check_shop_tag)
    username_template: str = "vs_{subscription_id}"
    x_api_key: str | None = attrs.field(default=None, repr=False)
    cookies: dict[str, str] | None = attrs.field(
        default=None, repr=False, converter=_cookies, eq=False, hash=False
    )
    timeout: float = attrs.field(default=10.0, validator=_check_positive)
    retry_attempts: int = attrs.field(default=3, validator=_check_attempts)
    retry_initial_wait: float = attrs.field(default=0.5, validator=_check_non_negative)
    retry_max_wait: float = attrs.field(default=8.0, validator=_check_non_negative)
    forwarded_headers: str = attrs.field(
        default="auto", validator=_check_choice("auto", "always", "never")
    )
    verify_tls: bool = True
    user_agent: str = "vpnshop-remnawave"

    def __attrs_post_init__(self) -> None:
        check_username_template(self.username_template)

    @property
    def api_root(self) -> str:
        root = self.base_url.rstrip("/")
        return root if root.endswith("/api") else root + "/api"

    @property
    def sends_forwarded_headers(self) -> bool:
        if self.forwarded_headers == "always":
            return True
        if self.forwarded_headers == "never":
            return False
        return urlsplit(self.base_url).scheme == "http"

    def username_for(self, subscription_id: int, customer_id: int = 0) -> str:
        """The panel username for a shop subscription (see :func:`render_username`)."""
        return render_username(self.username_template, subscription_id, customer_id)
