"""demo-data on SQLite and PostgreSQL (the ledger verifies, reminders run on it), the
CLI's broadcast and demo-data commands, and the due-scan's plan on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_database_url, sql_storage
from vpnshop.adapters.storage.demo_data import generate_demo_data
from vpnshop.adapters.storage.repositories.subscriptions import due_statement
from vpnshop.bootstrap import wire
from vpnshop.config import Settings
from vpnshop.domain.actor import Actor
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.services.reminders import SendReminders
from vpnshop.testing.fakes import FakeClock, SequentialIds

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_demo_data_balances_and_feeds_the_jobs(database_url: str) -> None:
    """demo-data writes customers with subscriptions, payments and balances whose ledger
    verifies, and the reminder scan finds its due subscriptions in them."""
    async with sql_storage(database_url) as storage:
        clock = FakeClock(NOW)
        app = wire(Settings(), storage=storage, clock=clock, ids=SequentialIds())
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
        assert storage.engine is not None
        seen: list[int] = []
        report = await generate_demo_data(
            storage.engine, 3000, NOW, progress=lambda d, n: seen.append(d)
        )
        assert report.customers == 3000 and seen[-1] == 3000
        assert 2000 < report.subscriptions < 2800 and report.ledger_entries > 500
        assert await app.verify_ledger() == []
        again = await generate_demo_data(storage.engine, 10, NOW)  # ids continue
        assert again.customers == 10
        assert await app.verify_ledger() == []
        async with storage() as uow:
            assert await uow.customers.count() == 3010
        enqueued = await SendReminders(app.deps, offsets=(86400,))()
        # about 1 in 150 subscriptions expire within any one day of the 150-day spread
        assert 0 < enqueued < 100


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


@pytest.mark.postgres
async def test_the_due_scan_reads_a_range_of_an_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On a filled PostgreSQL database the due-scan reads no table whole: a range of the
    expires_at index between the cursor and the horizon, and each customer by its key, so
    its cost follows the due rows, not the table."""
    url = make_database_url(request, "postgres", tmp_path)
    async with sql_storage(url) as storage:
        app = wire(Settings(), storage=storage, clock=FakeClock(NOW), ids=SequentialIds())
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
        assert storage.engine is not None
        await generate_demo_data(storage.engine, 20_000, NOW)
        stmt = due_statement((NOW, 0), NOW + timedelta(hours=1), limit=1000)
        compiled = stmt.compile(dialect=storage.engine.dialect)
        params = [compiled.params[k] for k in compiled.positiontup or ()]
        async with storage.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            explained = await raw.fetchval("EXPLAIN (FORMAT JSON) " + compiled.string, *params)
    plan = json.loads(explained) if isinstance(explained, str) else explained
    nodes = _nodes(plan[0]["Plan"])
    assert [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"] == []
    [scan] = [n for n in nodes if n.get("Index Name") == "ix_subscriptions_expires_at"]
    bounds = scan["Index Cond"]  # bounded on both sides: the rows past the cursor only
    assert "expires_at >=" in bounds and "expires_at <=" in bounds


def vpnshop(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "vpnshop.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_broadcast_and_demo_data_commands(tmp_path: Path) -> None:
    """demo-data fills a fresh SQLite database with a progress bar and ledger verify
    passes; broadcast create, status and cancel report in one line each and refuse bad
    input without a traceback."""
    env = {"VPNSHOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"}
    assert vpnshop("db", "upgrade", cwd=tmp_path, **env).returncode == 0
    made = vpnshop("demo-data", "--customers", "500", cwd=tmp_path, **env)
    assert made.returncode == 0, made.stderr
    assert "500/500 customers" in made.stderr and "500 customers" in made.stdout
    assert vpnshop("ledger", "verify", cwd=tmp_path, **env).returncode == 0
    (tmp_path / "text.html").write_text("Hello <b>there</b>", encoding="utf-8")
    created = vpnshop(
        "broadcast", "create", "--segment", "all", "--text-file", "text.html", cwd=tmp_path, **env
    )
    assert created.returncode == 0 and "broadcast 1 created" in created.stdout
    status = vpnshop("broadcast", "status", "1", cwd=tmp_path, **env)
    assert "broadcast 1 (all, running): sent 0, failed 0, pending" in status.stdout
    assert vpnshop("broadcast", "cancel", "1", cwd=tmp_path, **env).returncode == 0
    again = vpnshop("broadcast", "cancel", "1", cwd=tmp_path, **env)
    assert again.returncode == 1 and "was not running" in again.stdout
    missing = vpnshop("broadcast", "status", "7", cwd=tmp_path, **env)
    assert (
        missing.returncode == 1 and missing.stderr.strip() == "vpnshop: broadcast 7 does not exist"
    )
    no_file = vpnshop(
        "broadcast", "create", "--segment", "all", "--text-file", "nope", cwd=tmp_path, **env
    )
    assert no_file.returncode == 1 and "Traceback" not in no_file.stderr
