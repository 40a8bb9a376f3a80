"""Notifications rendered for the Notifier port (``services.notifications.Notice``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vpnshop.i18n import translate
from vpnshop.i18n.formats import date, gib
from vpnshop.ports.notifier import Message
from vpnshop.services.notifications import Notice


def _value(language: str, name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return date(language, value)
    if name == "expires_at" and isinstance(value, str):
        return date(language, datetime.fromisoformat(value))
    if name.endswith("_bytes") and isinstance(value, int):
        return gib(value)
    return value


def render_notice(notice: Notice) -> Message:
    """The text of ``notice.<key>`` in the notice's language (KeyError: no such text)."""
    values = {k: _value(notice.language, k, v) for k, v in notice.values.items()}
    return Message(translate(notice.language, f"notice.{notice.key}", **values))
