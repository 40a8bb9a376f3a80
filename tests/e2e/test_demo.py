"""``vpnshop demo`` in CI: the whole shop offline in a subprocess, every step checked,
the chat and the final state printed; and a failing step makes the demo fail by name."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from vpnshop.demo.steps import StepFailed, Steps, check

KEY_LINES = [
    "ok    referral link: Alice opened the bot by Bob's link ref_",
    "ok    free trial: trial until",
    "ok    buy with YooKassa: 199.00 RUB via yookassa",
    "ok    buy with CryptoPay: 199.00 RUB via cryptopay",
    "ok    buy with FreeKassa: 199.00 RUB via freekassa",
    "ok    Tribute subscription: Tribute new_subscription",
    "ok    buy with Telegram Stars: 130 XTR",
    "ok    top up the balance: balance 500.00 RUB",
    "ok    pay from the balance: 199.00 RUB from the balance; balance 301.00 RUB",
    "ok    promo code: WELCOME7: 7 days",
    "ok    auto-renewal on:",
    "ok    expiry reminder:",
    "ok    auto-renewal: renewed from the balance",
    "ok    admin refund: 199.00 RUB through YooKassa",
    "ok    ledger verify:",
    "== The chat, as the customers saw it ==",
    "bot to Alice (edited):",
    "Alice: taps [🛒 Buy or extend]",
    "    [⭐ Telegram Stars: 130 XTR]",
    "Payment of 199.00 RUB received. Your subscription is active until",
    "⏰ Your subscription ends on",
    "🔄 Your subscription was renewed automatically for 30 days: 199.00 RUB from your balance."
    " It is active until",
    "A refund of 199.00 RUB is on its way to your payment method.",
    "== Final state ==",
    "  balance: 102.00 RUB",
    "  panel user vs_1: ACTIVE",
    "demo passed: 15 steps checked out",
]


def test_demo_runs_the_whole_shop_offline_and_passes(tmp_path: Path) -> None:
    """`vpnshop demo` with no configuration exits 0 within a minute, prints every step
    as checked, the chat with its buttons and the final state, and leaves no file behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    done = subprocess.run(
        [sys.executable, "-m", "vpnshop.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in KEY_LINES:
        assert line in done.stdout, f"{line!r} missing from:\n{done.stdout}"
    assert "Traceback" not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # the database was a temporary file


async def test_a_failing_step_fails_the_demo_by_name_and_stops_it() -> None:
    """The first step whose check fails is named with what it expected; no later step
    runs, so the verdict is the failure."""
    out = io.StringIO()
    steps = Steps(out)
    ran: list[str] = []

    async def good() -> str:
        ran.append("good")
        return "fine"

    async def bad() -> str:
        check(1 + 1 == 3, "arithmetic holds")
        raise StepFailed("unreachable")

    assert await steps.run("first", good)
    assert not await steps.run("second", bad)
    assert not await steps.run("third", good)
    assert ran == ["good"]
    assert steps.failed is not None and steps.failed.name == "second"
    assert "FAIL  second: arithmetic holds" in out.getvalue()
