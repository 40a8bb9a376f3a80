"""``vpnshop run``: the shells, started from one place.

The library imports no shell: a shell registers its ``serve(settings)`` coroutine under
the ``vpnshop.shells`` entry-point group (``[project.entry-points]`` in pyproject.toml),
and is found here by name when it is installed. ``serve(settings, app=App, stop=Event,
ready=...)`` runs the shell as one part of a bigger process (``vpnshop run all``,
``vpnshop.runall``): on the caller's App, stopping with the caller's event.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any

from vpnshop.config import Settings
from vpnshop.heap import settle_heap

SHELLS_GROUP = "vpnshop.shells"

Serve = Callable[..., Awaitable[None]]


def installed_shells() -> dict[str, Serve]:
    """The shells installed with their entry points, by name; loading one imports it."""
    return {ep.name: _Lazy(ep.load) for ep in entry_points(group=SHELLS_GROUP)}


class _Lazy:
    """An entry point's ``serve``, imported on the first call (only the shell that runs
    pays for its imports)."""

    def __init__(self, load: Callable[[], Serve]) -> None:
        self._load = load

    def __call__(self, settings: Settings, **parts: Any) -> Awaitable[None]:
        return self._load()(settings, **parts)


async def prepare_embedded(settings: Settings) -> None:
    """Create (migrate) the database and load the example plans into an empty shop."""
    from vpnshop.bootstrap import bootstrap
    from vpnshop.domain.actor import Actor
    from vpnshop.plansfile import EXAMPLE, load_plans_file

    async with bootstrap(settings) as app:
        if not await app.list_plans(active_only=False):
            report = await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("run"))
            print(f"loaded {len(report.created)} example plans from {EXAMPLE.name}")
        plans = await app.list_plans()
        print(f"database ready; {len(plans)} plans on sale: " + ", ".join(p.code for p in plans))


async def run(settings: Settings, shell: str) -> int:
    if shell == "all":
        from vpnshop.runall import run_all

        return await run_all(settings)
    serve = installed_shells().get(shell)
    if serve is None:
        print(
            f"vpnshop run {shell}: this shell is not installed; "
            "`vpnshop run webhooks` runs the webhook server",
            file=sys.stderr,
        )
        return 2
    part = serve(settings)  # imports the shell: all of the process's code is loaded now
    settle_heap()
    await part
    return 0
