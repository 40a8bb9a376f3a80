"""``vpnshop run all`` as a process: the webhook server, the scheduler and (with a token)
the bot in one process on embedded SQLite; it says what runs where, answers /healthz of
the webhooks and the scheduler, answers /start through the Telegram emulator, and stops
on SIGTERM with exit 0 and no traceback. Without a token aiogram is never imported."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import attrs

from tests.e2e.test_panel_metrics import api_requests, panel_calls
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop.testing.telegram import TelegramEmulator

TOKEN = "123456:AAH-emulatorTokenForVpnshopRunAllTests_012"
# Reports, after the CLI returns, whether the process ever imported aiogram.
PROBE = (
    "import sys, atexit\n"
    "atexit.register(lambda: print('aiogram imported:', 'aiogram' in sys.modules, flush=True))\n"
    "from vpnshop.cli import main\n"
    "sys.exit(main(['run', 'all']))\n"
)


@attrs.define
class RunAll:
    proc: asyncio.subprocess.Process
    urls: dict[str, str]
    log: list[str]


@asynccontextmanager
async def run_all(env: dict[str, str], cwd: Path) -> AsyncIterator[RunAll]:
    """A ``vpnshop run all`` process, once it has said what runs where."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full.update(env)
    full.update(VPNSHOP_WEBHOOKS_PORT="0", VPNSHOP_SCHEDULER_PORT="0", VPNSHOP_BOT_METRICS_PORT="0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        env=full,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    log: list[str] = []
    urls: dict[str, str] = {}
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, "run all exited before it started:\n" + "".join(log)
            log.append(line)
            words = line.split()
            if words and words[0] in ("webhooks", "scheduler") and len(words) > 1:
                urls[words[0]] = words[1]
            if line.startswith("Ctrl-C"):
                break

    async def pump() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            log.append(line.decode())

    pumping = asyncio.create_task(pump())
    try:
        yield RunAll(proc, urls, log)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await pumping


async def stop(shop: RunAll) -> str:
    """SIGTERM, then the whole output once the process has exited."""
    shop.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        await shop.proc.wait()
    await asyncio.sleep(0.1)
    return "".join(shop.log)


async def test_run_all_with_a_bot_token_runs_bot_webhooks_and_scheduler(tmp_path: Path) -> None:
    """With a token, one process answers both /healthz endpoints and a /start through the
    Telegram emulator, then stops on SIGTERM with exit 0 and no traceback."""
    async with TelegramEmulator(TOKEN) as tg:
        env = {"VPNSHOP_BOT_TOKEN": tg.token, "VPNSHOP_BOT_API_URL": tg.api_url}
        async with run_all(env, tmp_path) as shop:
            shown = "".join(shop.log)
            assert "bot        long polling " + tg.api_url in shown, shown
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{shop.urls['webhooks']}/healthz") as r:
                    assert r.status == 200, await r.text()
                async with http.get(f"{shop.urls['scheduler']}/healthz") as r:
                    assert r.status == 200 and (await r.json())["status"] == "ok"
            alice = tg.user(5001, "Alice")
            await alice.start()
            answer = await alice.reply(within=20)
            assert answer.buttons, alice.texts()
            output = await stop(shop)
    assert shop.proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "aiogram imported: True" in output
    assert (tmp_path / "vpnshop.db").exists()  # the embedded default


async def test_run_all_without_a_token_runs_no_bot_and_imports_no_aiogram(tmp_path: Path) -> None:
    """Without a token the webhooks and the scheduler run, the bot is reported off, and
    aiogram is never imported; the webhooks' /metrics counts the panel calls of the whole
    process; SIGTERM stops it with exit 0."""
    async with RemnawaveEmulator("3.3.2") as panel:
        env = {"VPNSHOP_PANEL_URL": panel.base_url, "VPNSHOP_PANEL_TOKEN": panel.token}
        async with run_all(env, tmp_path) as shop:
            shown = "".join(shop.log)
            assert "bot        off: VPNSHOP_BOT_TOKEN is not set" in shown, shown
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{shop.urls['scheduler']}/healthz") as r:
                    assert r.status == 200
                before = api_requests(panel)
                async with http.get(f"{shop.urls['webhooks']}/metrics") as r:
                    counted = panel_calls(await r.text())
                after = api_requests(panel)
            output = await stop(shop)
    assert before > 0
    assert before <= counted.get("ok", 0) <= after, (before, counted, after)
    assert shop.proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "aiogram imported: False" in output, output


async def test_run_all_on_a_busy_port_names_the_setting_and_stops_every_part(
    tmp_path: Path,
) -> None:
    """When the scheduler cannot listen, the process stops the parts that did start and
    exits non-zero with one line naming VPNSHOP_SCHEDULER_PORT, no traceback."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    full = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full.update(VPNSHOP_WEBHOOKS_PORT="0", VPNSHOP_SCHEDULER_PORT=str(port))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vpnshop.cli",
            "run",
            "all",
            env=full,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        busy.close()
    assert proc.returncode == 1, out.decode() + err.decode()
    assert f"VPNSHOP_SCHEDULER_PORT: cannot listen on 127.0.0.1:{port}" in err.decode()
    assert "Traceback" not in out.decode() + err.decode()
    assert "webhooks stopped" in err.decode()
