"""The table of Bot API methods the emulator serves; each module registers its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from vpnshop.testing.telegram.wire import Params

if TYPE_CHECKING:
    from vpnshop.testing.telegram.server import TelegramEmulator

Method = Callable[["TelegramEmulator", Params], Awaitable[Any]]

METHODS: dict[str, Method] = {}
SENDING: set[str] = set()  # methods that count against the flood limits


def method(name: str, *, sending: bool = False) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name.lower()] = fn
        if sending:
            SENDING.add(name.lower())
        return fn

    return register
