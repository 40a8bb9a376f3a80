"""The composition root's two parts: ``wire`` builds an App from open adapters without
opening anything, and the library finds shells without importing them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vpnshop.bootstrap import App, Storage, wire
from vpnshop.config import PanelSettings, Secret, Settings
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobKind
from vpnshop.runner import SHELLS_GROUP, installed_shells
from vpnshop.testing.fakes import FakeClock, FakeGateway, FakePanel, SequentialIds
from vpnshop.testing.memory import MemoryStore, memory_uow_factory

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class _Stats:
    batches = 3
    items = 7
    retried = 0


def _panel_settings(secret: str | None) -> PanelSettings:
    return PanelSettings(
        url="https://panel.example",
        token=Secret("t"),
        webhook_secret=Secret(secret) if secret else None,
    )


async def test_wire_builds_every_use_case_on_the_memory_store() -> None:
    """An App wired on the in-memory store with fakes works end to end (a customer, a
    checkout) and hands the settler's stats and the panel job handler through."""
    clock = FakeClock(NOW)
    stats = _Stats()
    gateway = FakeGateway("fake", RUB)
    app = wire(
        Settings(),
        storage=Storage(memory_uow_factory(MemoryStore()), settle_stats=stats),
        clock=clock,
        ids=SequentialIds(),
        panel=FakePanel(clock),
        gateways={"fake": gateway},
    )
    assert app.engine is None and app.settle_stats is stats
    assert set(app.outbox.handlers) == {JobKind.APPLY_SUBSCRIPTION}
    customer, _ = await app.register_customer(42)
    assert customer.id is not None
    link = await app.start_checkout(customer.id, "fake", topup=Money(50000, RUB))
    assert link.order.amount == Money(50000, RUB)


async def test_wire_hands_the_bot_the_journeys_on_the_same_store_and_trial() -> None:
    """The App's customer journeys share the store and the trial settings with the rest:
    a customer registered through the App is at home there, and the trial is on offer
    exactly as configured."""
    clock = FakeClock(NOW)
    app = wire(
        Settings(trial_days=0),
        storage=memory_uow_factory(MemoryStore()),
        clock=clock,
        ids=SequentialIds(),
        panel=FakePanel(clock),
    )
    assert app.journeys is not None
    customer, _ = await app.register_customer(43)
    assert customer.id is not None
    home = await app.journeys.home(customer.id)
    assert home.trial_available is False  # trial_days=0 switches the trial off


def test_panel_webhooks_are_verified_only_with_a_secret() -> None:
    """The App has a panel webhook verifier only when the panel's webhook secret is set,
    and no panel job handler without a panel adapter."""
    clock = FakeClock(NOW)

    def app_for(secret: str | None) -> App:
        return wire(
            Settings(panel=_panel_settings(secret)),
            storage=memory_uow_factory(MemoryStore()),
            clock=clock,
            ids=SequentialIds(),
        )

    with_secret, without = app_for("s3cret"), app_for(None)
    assert with_secret.panel_webhooks is not None
    assert without.panel_webhooks is None
    assert without.outbox.handlers == {}


def test_shells_are_found_through_their_entry_points() -> None:
    """`vpnshop run webhooks` finds the webhook shell in the entry-point group, and
    loading the registry imports no shell until one is called."""
    from importlib.metadata import entry_points

    (webhooks,) = [ep for ep in entry_points(group=SHELLS_GROUP) if ep.name == "webhooks"]
    assert webhooks.value == "vpnshop_webhooks.server:serve"
    assert "webhooks" in installed_shells()


async def test_a_shell_that_is_not_installed_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Running a shell no entry point registers exits 2 and says it is not installed
    (every shell `vpnshop run` offers is installed here, so the runner is asked directly)."""
    from vpnshop.runner import run

    assert await run(Settings(), "nosuchshell") == 2
    assert "vpnshop run nosuchshell: this shell is not installed" in capsys.readouterr().err


def test_run_bot_without_token_names_the_setting(tmp_path: Path) -> None:
    """`vpnshop run bot` without VPNSHOP_BOT_TOKEN fails in one line naming it."""
    done = subprocess.run(
        [sys.executable, "-m", "vpnshop.cli", "run", "bot"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "vpnshop: VPNSHOP_BOT_TOKEN: is not set: the bot needs its token"


def test_the_library_imports_no_shell() -> None:
    """Importing the CLI, the runner and the composition root loads nothing from shells/."""
    code = (
        "import sys, vpnshop.cli, vpnshop.runner, vpnshop.bootstrap\n"
        "vpnshop.runner.installed_shells()\n"
        "shells = ('vpnshop_webhooks', 'vpnshop_bot', 'vpnshop_scheduler')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in shells)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
