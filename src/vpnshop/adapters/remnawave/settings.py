"""Configuration of the Remnawave adapter."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from vpnshop.adapters.remnawave.errors import RemnawaveConfigError

SHOP_TAG_PATTERN = re.compile(r"^[A-Z0-9_]{1,16}$")
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{3,36}$")
#: The largest subscription id a template must still render validly (a signed BIGINT).
MAX_SUBSCRIPTION_ID = 2**63 - 1
_TEMPLATE_FIELDS = frozenset({"subscription_id", "customer_id"})


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


def render_username(template: str, subscription_id: int, customer_id: int = 0) -> str:
    """The panel username of one shop subscription.

    Only ``{subscription_id}`` (required) and ``{customer_id}`` may appear in *template*
    (the same fields as the service's ``PanelNaming``). Fixed text around the decimal
    subscription id is injective, so distinct subscriptions always get distinct usernames.
    """
    if subscription_id < 0 or customer_id < 0:
        raise ValueError("subscription and customer ids cannot be negative")
    return template.format(subscription_id=subscription_id, customer_id=customer_id)


def check_username_template(template: str) -> None:
    """Refuse a template unless every pair of ids from 0 to a BIGINT renders to a valid
    Remnawave username (``^[a-zA-Z0-9_-]{3,36}$``)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise RemnawaveConfigError(f"username_template {template!r} is malformed: {exc}") from exc
    if "subscription_id" not in fields:
        raise RemnawaveConfigError(
            f"username_template {template!r} must contain {{subscription_id}}: it is what "
            "makes the username unique per shop subscription"
        )
    unknown = set(fields) - _TEMPLATE_FIELDS
    if unknown:
        raise RemnawaveConfigError(
            f"username_template {template!r} uses unknown fields {sorted(unknown)}; "
            f"allowed: {sorted(_TEMPLATE_FIELDS)}"
        )
    for sub_id, customer_id in ((0, 0), (1, 1), (MAX_SUBSCRIPTION_ID, MAX_SUBSCRIPTION_ID)):
        try:
            rendered = render_username(template, sub_id, customer_id)
        except (ValueError, IndexError, KeyError) as exc:
            raise RemnawaveConfigError(
                f"username_template {template!r} cannot be rendered: {exc}"
            ) from exc
        if not USERNAME_PATTERN.match(rendered):
            raise RemnawaveConfigError(
                f"username_template {template!r} renders {rendered!r} for subscription id "
                f"{sub_id}, which is not a valid Remnawave username (^[a-zA-Z0-9_-]{{3,36}}$); "
                "it must stay valid up to the largest id (19 digits)"
            )


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
