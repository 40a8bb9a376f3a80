"""Panel call metrics: the Remnawave adapter reports every HTTP request it sends, and the
webhooks process counts them in ``vpnshop_panel_calls_total{outcome}`` on ``/metrics``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from vpnshop.adapters.remnawave import PanelCallOutcome, RemnawavePanel, RemnawaveSettings
from vpnshop.config import parse_settings
from vpnshop.ports.panel import PanelError, PanelUnavailableError
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop_webhooks.server import serve


def panel_calls(metrics_text: str) -> dict[str, float]:
    """``vpnshop_panel_calls_total`` by outcome, read from a Prometheus text page."""
    pattern = r'^vpnshop_panel_calls_total\{outcome="(\w+)"\} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, metrics_text, re.MULTILINE)}


def api_requests(emu: RemnawaveEmulator) -> int:
    """How many API requests the panel emulator has received."""
    return len([r for r in emu.requests if r.path.startswith("/api/")])


async def test_metrics_page_counts_the_panel_calls_of_the_webhooks_process(
    tmp_path: Path,
) -> None:
    """The server wires the panel adapter to its metrics: /metrics counts exactly the HTTP
    requests the panel received from the process (here the API line detection at start)."""
    async with RemnawaveEmulator("3.3.2") as emu:
        settings = parse_settings(
            {
                "VPNSHOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/metrics.db",
                "VPNSHOP_WEBHOOKS_PORT": "0",
                "VPNSHOP_PANEL_URL": emu.base_url,
                "VPNSHOP_PANEL_TOKEN": emu.token,
            }
        )
        stop = asyncio.Event()
        urls: list[str] = []
        task = asyncio.create_task(serve(settings, stop=stop, ready=urls.append))
        try:
            for _ in range(200):
                if urls or task.done():
                    break
                await asyncio.sleep(0.05)
            assert urls, "the server did not start"
            sent = api_requests(emu)
            async with (
                aiohttp.ClientSession() as session,
                session.get(urls[0] + "/metrics") as resp,
            ):
                page = await resp.text()
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
    assert sent > 0
    assert panel_calls(page).get("ok") == sent
    assert panel_calls(page).get("unavailable", 0) == 0


async def test_adapter_reports_each_attempt_with_its_outcome() -> None:
    """Each HTTP request is reported once: a retried 503 as unavailable then ok, a refusal
    as error, and calls that never reached the panel as unavailable."""
    outcomes: list[PanelCallOutcome] = []
    async with RemnawaveEmulator("3.3.2") as emu:
        settings = RemnawaveSettings(
            base_url=emu.base_url,
            token=emu.token,
            retry_attempts=2,
            retry_initial_wait=0.001,
            retry_max_wait=0.01,
            timeout=3.0,
        )
        async with RemnawavePanel(settings, on_call=outcomes.append) as panel:
            assert outcomes and set(outcomes) == {"ok"}
            outcomes.clear()

            emu.fail(r"/internal-squads", 503, times=1)
            await panel.squads()
            assert outcomes == ["unavailable", "ok"]

            outcomes.clear()
            emu.fail(r"/internal-squads", 403, times=1)
            with pytest.raises(PanelError):
                await panel.squads()
            assert outcomes == ["error"]

            outcomes.clear()
            emu.down = True
            with pytest.raises(PanelUnavailableError):
                await panel.squads()
            assert outcomes == ["unavailable", "unavailable"]
