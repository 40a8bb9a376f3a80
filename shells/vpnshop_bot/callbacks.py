"""Callback data shared by several features. Short prefixes, ids only: never a price or
a secret (the server looks everything up and checks ownership)."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class Nav(CallbackData, prefix="n"):
    """Open a screen: ``to`` is a menu entry's key (``menu``, ``trial``, ``lang``, ...)."""

    to: str


class Gate(CallbackData, prefix="gt"):
    """ "I joined, check again" under the required-channel notice."""


class Lang(CallbackData, prefix="lg"):
    code: str


class Connect(CallbackData, prefix="cn"):
    platform: str
