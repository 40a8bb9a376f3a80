"""The `vpnshop` command, run as a user runs it: a subprocess with environment settings."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vpnshop.adapters.storage.migrate import head_revision
from vpnshop.cli import build_parser


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


def run_all_until_ready(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`vpnshop run all` (free ports), stopped by SIGTERM once it says what runs where."""
    import signal

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
    full_env.update(VPNSHOP_WEBHOOKS_PORT="0", VPNSHOP_SCHEDULER_PORT="0", **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpnshop.cli", "run", "all"],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("Ctrl-C"):
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out) + rest, err)


def all_commands() -> list[list[str]]:
    """Every command path of the parser, e.g. ["db", "upgrade"]."""
    import argparse

    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return paths


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` works on every command and describes it."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: vpnshop" in capsys.readouterr().out


def test_bad_config_stops_with_the_variable_name(tmp_path: Path) -> None:
    """An invalid setting stops the command, naming the variable and what is wrong."""
    result = vpnshop(
        "check", cwd=tmp_path, VPNSHOP_WEBHOOKS_PORT="eighty", VPNSHOP_YOOKASSA_SHOP_ID="123"
    )
    assert result.returncode == 2
    assert "VPNSHOP_WEBHOOKS_PORT: expected a whole number, got 'eighty'" in result.stderr
    assert "VPNSHOP_YOOKASSA_SECRET_KEY: is required to enable yookassa" in result.stderr


def test_secrets_never_printed(tmp_path: Path) -> None:
    """`vpnshop check` reports configured parts without printing their secrets."""
    (tmp_path / ".env").write_text("VPNSHOP_CRYPTOPAY_TOKEN=1234:SECRETSECRETSECRET\n")
    result = vpnshop("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cryptopay" in result.stdout and "SECRETSECRET" not in result.stdout + result.stderr
    assert "VPNSHOP_PUBLIC_URL is not set" in result.stdout


def test_run_all_prepares_the_embedded_shop(tmp_path: Path) -> None:
    """`vpnshop run all` creates the SQLite database, loads the example plans once, and
    prints the configuration check before it starts."""
    first = run_all_until_ready(tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "vpnshop.db").exists()
    assert "loaded 4 example plans" in first.stdout
    assert "embedded SQLite" in first.stdout
    second = run_all_until_ready(tmp_path)
    assert "loaded" not in second.stdout and "4 plans on sale" in second.stdout


def test_plans_load_is_idempotent_and_validated(tmp_path: Path) -> None:
    """Loading a plans file twice changes nothing; a bad file names the plan and field."""
    first = vpnshop("plans", "load", "--example", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "4 created, 0 updated, 0 unchanged" in first.stdout
    second = vpnshop("plans", "load", "--example", cwd=tmp_path)
    assert "0 created, 0 updated, 4 unchanged" in second.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[plan]]\ncode = "x"\nduration_days = 30\nnames = {en = "X"}\nprices = {RUB = "1.999"}\n'
    )
    result = vpnshop("plans", "load", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "plan #1 (x)" in result.stderr and "more than 2 decimals" in result.stderr


def test_ledger_verify_finds_offenders(tmp_path: Path) -> None:
    """`vpnshop ledger verify` passes on a consistent ledger and names a customer whose
    stored balance was changed behind the ledger's back."""
    assert vpnshop("db", "upgrade", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "vpnshop.db")
    with db:
        db.execute(
            "INSERT INTO customers (id, telegram_id, language, banned, created_at) "
            "VALUES (7, 77, 'en', 0, '2026-11-23 00:00:00')"
        )
        db.execute(
            "INSERT INTO ledger (customer_id, amount_minor, currency, kind, "
            "idempotency_key, actor, created_at) VALUES (7, 500, 'RUB', 'topup', 'k', "
            "'system:test', '2026-11-23 00:00:00')"
        )
        db.execute("INSERT INTO balances VALUES (7, 'RUB', 500)")
    ok = vpnshop("ledger", "verify", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with db:
        db.execute("UPDATE balances SET amount_minor = 900 WHERE customer_id = 7")
    db.close()
    bad = vpnshop("ledger", "verify", cwd=tmp_path)
    assert bad.returncode == 1
    assert "customer 7 RUB: stored 900, ledger sum 500" in bad.stdout


def test_db_current_reports_an_unmigrated_database(tmp_path: Path) -> None:
    """`vpnshop db current` exits 1 until the schema is upgraded."""
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert vpnshop("db", "current", cwd=tmp_path, VPNSHOP_DATABASE_URL=url).returncode == 1
    assert vpnshop("db", "upgrade", cwd=tmp_path, VPNSHOP_DATABASE_URL=url).returncode == 0
    current = vpnshop("db", "current", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert current.returncode == 0 and f"current: {head_revision()}" in current.stdout


@pytest.mark.postgres
def test_cli_on_postgres(tmp_path: Path, pg_cluster: object) -> None:
    """The same commands work on PostgreSQL, which must be upgraded explicitly."""
    from vpnshop.testing.pgcluster import PostgresCluster

    assert isinstance(pg_cluster, PostgresCluster)
    pg_cluster.create_database("cli_test")
    url = pg_cluster.dsn("cli_test")
    refused = vpnshop("plans", "load", "--example", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert refused.returncode == 1 and "run `vpnshop db upgrade`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert vpnshop("db", "upgrade", cwd=tmp_path, VPNSHOP_DATABASE_URL=url).returncode == 0
    loaded = vpnshop("plans", "load", "--example", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert loaded.returncode == 0, loaded.stderr
    verify = vpnshop("ledger", "verify", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert verify.returncode == 0


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    """With VPNSHOP_LOG_FORMAT=json every log line on stderr is a JSON object."""
    import json

    result = run_all_until_ready(tmp_path, VPNSHOP_LOG_FORMAT="json", VPNSHOP_LOG_LEVEL="debug")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)


def test_sentry_dsn_without_the_extra_is_a_config_error(tmp_path: Path) -> None:
    """A Sentry DSN without sentry-sdk installed stops with the variable's name."""
    import importlib.util

    if importlib.util.find_spec("sentry_sdk") is not None:
        pytest.skip("sentry-sdk is installed here")
    result = vpnshop("check", cwd=tmp_path, VPNSHOP_SENTRY_DSN="https://k@sentry.invalid/1")
    assert result.returncode == 2
    assert "VPNSHOP_SENTRY_DSN: is set but sentry-sdk is not installed" in result.stderr
