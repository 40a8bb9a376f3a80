"""``vpnshop run``: the shells, started from one place."""

from __future__ import annotations

import sys

from vpnshop.config import Settings


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
    from vpnshop.checks import run_checks

    if shell == "all":
        await prepare_embedded(settings)
        status = await run_checks(settings, reach=True, out=sys.stdout)
        print(
            "start the webhook server with `vpnshop run webhooks`; the bot and scheduler "
            "shells are not written yet"
        )
        return status
    if shell == "webhooks":
        from shells.webhooks.server import serve

        await serve(settings)
        return 0
    print(
        f"vpnshop run {shell}: the {shell} shell is not written yet; "
        "`vpnshop run webhooks` runs the webhook server",
        file=sys.stderr,
    )
    return 2
