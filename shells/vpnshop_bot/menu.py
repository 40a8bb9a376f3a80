"""The main menu's registry: each feature registers its buttons here, so the menu shows
a button only for a journey that exists, and only when it applies to the customer."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from vpnshop.services.home import Home


def _always(_: Home) -> bool:
    return True


@attrs.frozen
class MenuEntry:
    """A main-menu button: its label's message id, the callback data it sends, its place
    (lower ``order`` first; entries with the same ``order // 10`` share a row) and when
    it is shown."""

    key: str
    label: str
    callback: str
    order: int
    visible: Callable[[Home], bool] = _always


@attrs.define
class MenuRegistry:
    entries: list[MenuEntry] = attrs.field(factory=list)

    def add(self, entry: MenuEntry) -> None:
        if any(e.key == entry.key for e in self.entries):
            raise ValueError(f"menu entry {entry.key!r} registered twice")
        self.entries.append(entry)

    def for_home(self, home: Home) -> list[MenuEntry]:
        return sorted((e for e in self.entries if e.visible(home)), key=lambda e: e.order)
