"""The server processes settle their heap once started: what start-up built is frozen
out of the collector's walks, and the youngest generation is collected less often."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from vpnshop import runner
from vpnshop.config import Settings
from vpnshop.heap import GEN0_THRESHOLD


def test_settle_heap_freezes_start_up_and_raises_the_young_threshold() -> None:
    """In a fresh process, settle_heap leaves the start-up objects frozen and the first
    threshold at GEN0_THRESHOLD, the older ones as they were; cycles are still collected."""
    code = (
        "import gc\n"
        "before = gc.get_threshold()\n"
        "from vpnshop.heap import settle_heap\n"
        "settle_heap()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.b, b.a = b, a\n"
        "del a, b\n"
        "found = gc.collect()\n"
        "after = gc.get_threshold()\n"
        "print(gc.get_freeze_count(), after[0], after[1:] == before[1:], found)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    frozen, first, older_kept, found = done.stdout.split()
    assert int(frozen) > 1000  # the interpreter's and vpnshop's own objects
    assert int(first) == GEN0_THRESHOLD
    assert older_kept == "True"
    assert int(found) >= 2  # the two nodes of the cycle


async def test_run_settles_the_heap_after_importing_the_shell_and_before_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`vpnshop run <shell>` loads the shell (its imports), then settles the heap, then
    serves: the order that freezes the shell's code but not what serving creates."""
    events: list[str] = []

    async def serving() -> None:
        events.append("served")

    def serve(settings: Settings, **parts: Any) -> Any:
        events.append("loaded")
        return serving()

    monkeypatch.setattr(runner, "installed_shells", lambda: {"fake": serve})
    monkeypatch.setattr(runner, "settle_heap", lambda: events.append("settled"))
    assert await runner.run(Settings(), "fake") == 0
    assert events == ["loaded", "settled", "served"]
