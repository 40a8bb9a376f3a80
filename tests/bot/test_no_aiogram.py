"""Only the bot process imports aiogram: the CLI, ``vpnshop --help`` and the webhook
server (which renders and sends notifications too) do not."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, runpy
sys.argv = ["vpnshop", "--help"]
try:
    runpy.run_module("vpnshop.cli", run_name="__main__")
except SystemExit:
    pass
import vpnshop.cli, vpnshop.bootstrap, vpnshop.i18n.notices, vpnshop.runner
import vpnshop_webhooks.server, vpnshop_webhooks.app
from vpnshop.bootstrap.wiring import notifications
from vpnshop.runner import installed_shells
assert "bot" in installed_shells()
print(sorted(m for m in sys.modules if m.split(".")[0] == "aiogram"))
"""


def test_cli_help_and_webhook_server_do_not_import_aiogram() -> None:
    """A fresh interpreter running `vpnshop --help` and importing the CLI, the composition
    root, the notifications' renderer and the webhook server has no aiogram module."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "usage" in done.stdout.lower()


def test_the_bot_shell_does_import_aiogram() -> None:
    """The probe can see aiogram when it is imported (so the test above can fail)."""
    probe = "import sys, vpnshop_bot.serve; print('aiogram' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "True", done.stderr
