"""An operator's first hour (issue 10), run as a new user runs it: the real `vpnshop`
command in a subprocess, each likely mistake answered in a line or two that names the
thing and the cause, with a non-zero exit and never a traceback."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tomllib
from pathlib import Path

import pytest

from tests.integration.test_cli import vpnshop

ROOT = Path(__file__).resolve().parents[2]
BAD_PROVIDER_VALUES = {
    "VPNSHOP_YOOKASSA_SHOP_ID": "1",
    "VPNSHOP_YOOKASSA_SECRET_KEY": "k",
    "VPNSHOP_YOOKASSA_VAT_CODE": "13",
    "VPNSHOP_YOOKASSA_ALLOWED_IPS": "nope",
    "VPNSHOP_CRYPTOPAY_TOKEN": "1:abc",
    "VPNSHOP_CRYPTOPAY_NETWORK": "moon",
    "VPNSHOP_TRIBUTE_API_KEY": "k",
    "VPNSHOP_TRIBUTE_PRODUCTS": "garbage",
    "VPNSHOP_TRUSTED_PROXIES": "garbage",
}


def no_traceback(result: object) -> None:
    assert "Traceback" not in getattr(result, "stderr", ""), getattr(result, "stderr", "")


def test_env_example_copied_as_is_passes_check(tmp_path: Path) -> None:
    """`cp .env.example .env && vpnshop check` passes: inline comments are comments."""
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = vpnshop("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "payments  off   not configured: yookassa, cryptopay, freekassa, tribute" in (
        result.stdout
    )


def test_env_example_uncommented_only_asks_for_secrets(tmp_path: Path) -> None:
    """With every example line uncommented, check's only complaints are secrets the
    operator has yet to fill in: the examples themselves are valid values."""
    example = (ROOT / ".env.example").read_text()
    (tmp_path / ".env").write_text(re.sub(r"(?m)^# (VPNSHOP_)", r"\1", example))
    result = vpnshop("check", cwd=tmp_path)
    no_traceback(result)
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert problems, result.stderr
    required = re.compile(r"  VPNSHOP_\w+: is required to enable \w+")
    assert all(required.fullmatch(line) for line in problems), problems


@pytest.mark.parametrize("command", [["check"], ["run", "webhooks"]], ids=" ".join)
def test_bad_provider_values_stop_every_command_alike(tmp_path: Path, command: list[str]) -> None:
    """`check` and `run webhooks` refuse the same values, all at once, by name, exit 2."""
    result = vpnshop(*command, cwd=tmp_path, **BAD_PROVIDER_VALUES)
    assert result.returncode == 2
    no_traceback(result)
    for name in (
        "VPNSHOP_YOOKASSA_VAT_CODE: must be at most 12, got 13",
        "VPNSHOP_YOOKASSA_ALLOWED_IPS: invalid IP allowlist entry 'nope'",
        "VPNSHOP_CRYPTOPAY_NETWORK: expected one of mainnet, testnet, got 'moon'",
        "VPNSHOP_TRIBUTE_PRODUCTS: expected plan=link pairs",
        "VPNSHOP_TRUSTED_PROXIES: invalid IP allowlist entry 'garbage'",
    ):
        assert name in result.stderr
    assert not (tmp_path / "vpnshop.db").exists()


def test_env_file_option_before_or_after_the_command(tmp_path: Path) -> None:
    """--env-file works on either side of the command; a missing or non-UTF-8 file is an
    error naming it."""
    (tmp_path / "prod.env").write_text("VPNSHOP_CRYPTOPAY_TOKEN=1:abc  # from prod.env\n")
    for args in (["--env-file", "prod.env", "check"], ["check", "--env-file", "prod.env"]):
        result = vpnshop(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "cryptopay  on" in result.stdout
    missing = vpnshop("check", "--env-file", "/nonexistent/prod.env", cwd=tmp_path)
    assert missing.returncode == 2
    assert "--env-file /nonexistent/prod.env: no such file" in missing.stderr
    (tmp_path / "latin.env").write_bytes(b"VPNSHOP_BOT_TOKEN=caf\xe9\n")
    latin = vpnshop("--env-file", "latin.env", "check", cwd=tmp_path)
    assert latin.returncode == 2 and "latin.env: is not UTF-8" in latin.stderr
    no_traceback(latin)


def test_misspelt_variable_warns_and_commands_stay_quiet(tmp_path: Path) -> None:
    """A misspelt variable gets one warning with the closest name; no command logs a
    line per disabled provider."""
    result = vpnshop("plans", "list", cwd=tmp_path, VPNSHOP_TRIAL_DAY="5")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "VPNSHOP_TRIAL_DAY" in line]
    assert warnings == [
        "vpnshop: warning: VPNSHOP_TRIAL_DAY is not a setting vpnshop knows; "
        "did you mean VPNSHOP_TRIAL_DAYS?"
    ]
    assert "disabled" not in result.stderr


def test_unusable_sqlite_paths_are_named(tmp_path: Path) -> None:
    """A database file in a missing directory, or a path that is a directory, is one line
    naming the path and the cause, exit 1."""
    cases = {
        "sqlite:////nonexistent/x.db": "SQLite file /nonexistent/x.db: "
        "the directory /nonexistent does not exist",
        f"sqlite:///{tmp_path}": f"SQLite file {tmp_path}: the path is a directory",
    }
    for url, expected in cases.items():
        result = vpnshop("plans", "list", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
        assert result.returncode == 1
        no_traceback(result)
        assert result.stderr.strip() == (
            f"vpnshop: cannot use the database (VPNSHOP_DATABASE_URL), {expected}"
        )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_directory_is_named(tmp_path: Path) -> None:
    """A database in a directory this user cannot write is named with that cause."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    url = f"sqlite:///{locked}/shop.db"
    result = vpnshop("db", "upgrade", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert result.returncode == 1
    assert f"the directory {locked} is not writable" in result.stderr
    no_traceback(result)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgres_is_named_by_host_and_port(tmp_path: Path) -> None:
    """A PostgreSQL server that refuses the connection is named by host and port."""
    port = free_port()
    url = f"postgresql://shop:pw@127.0.0.1:{port}/shop"
    result = vpnshop("plans", "list", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert result.returncode == 1
    no_traceback(result)
    assert f"PostgreSQL at 127.0.0.1:{port}/shop" in result.stderr
    assert "refused" in result.stderr.lower()
    reach = vpnshop("check", "--reach", cwd=tmp_path, VPNSHOP_DATABASE_URL=url)
    assert reach.returncode == 1 and f"127.0.0.1:{port}" in reach.stdout


@pytest.mark.postgres
def test_missing_postgres_database_is_named(tmp_path: Path, pg_cluster: object) -> None:
    """A PostgreSQL server that answers but has no such database says so, by host,
    port and name."""
    from sqlalchemy.engine import make_url

    from vpnshop.testing.pgcluster import PostgresCluster

    assert isinstance(pg_cluster, PostgresCluster)
    url = make_url(pg_cluster.dsn("postgres")).set(database="no_such_shop")
    result = vpnshop(
        "ledger",
        "verify",
        cwd=tmp_path,
        VPNSHOP_DATABASE_URL=url.render_as_string(hide_password=False),
    )
    assert result.returncode == 1
    no_traceback(result)
    assert f"PostgreSQL at {url.host}:{url.port}/no_such_shop" in result.stderr
    assert 'database "no_such_shop" does not exist' in result.stderr


def test_busy_port_names_the_setting(tmp_path: Path) -> None:
    """`run webhooks` on a port another process holds names VPNSHOP_WEBHOOKS_PORT."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = vpnshop(
            "run",
            "webhooks",
            cwd=tmp_path,
            VPNSHOP_WEBHOOKS_PORT=str(port),
            VPNSHOP_LOG_LEVEL="warning",
        )
    assert result.returncode == 1
    no_traceback(result)
    assert result.stderr.strip() == (
        f"vpnshop: VPNSHOP_WEBHOOKS_PORT: port {port} on 127.0.0.1 is already in use"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('squads = ["not-a-uuid"]', "squads: 'not-a-uuid' is not a squad uuid"),
        ('duration_days = "thirty"', "duration_days: expected a whole number, got 'thirty'"),
        (
            'traffic_reset = "MONTHLY"',
            "traffic_reset: expected one of NO_RESET, DAY, WEEK, MONTH, MONTH_ROLLING",
        ),
    ],
)
def test_plans_file_mistakes_name_the_field(tmp_path: Path, line: str, message: str) -> None:
    """`plans load` names the plan and the field of a bad value and exits 1."""
    fields = {"code": 'code = "month"', "duration_days": "duration_days = 30"}
    fields[line.split(" ")[0]] = line
    plans = tmp_path / "plans.toml"
    plans.write_text(
        "[[plan]]\n" + "\n".join(fields.values()) + '\nnames = {en = "M"}\nprices = {RUB = 1}\n'
    )
    result = vpnshop("plans", "load", str(plans), cwd=tmp_path)
    assert result.returncode == 1
    no_traceback(result)
    assert f"plan #1 (month): {message}" in result.stderr


def test_check_reach_in_an_empty_directory_creates_nothing(tmp_path: Path) -> None:
    """`check --reach` does not create an unmigrated vpnshop.db; it says the first
    command will create it."""
    result = vpnshop("check", "--reach", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "does not exist yet; the first command creates it" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_version_licence_and_typing_marker(tmp_path: Path) -> None:
    """`vpnshop --version` prints the package version; LICENSE is the declared MIT
    licence; py.typed ships in the package."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result = vpnshop("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"vpnshop {meta['version']}")
    assert meta["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "src" / "vpnshop" / "py.typed").exists()
    assert any(c == "Typing :: Typed" for c in meta["classifiers"])


def test_wheel_installs_only_vpnshop_named_packages() -> None:
    """The wheel installs nothing under a generic top-level name such as `shells`: the
    library and each shell are packages named for the project."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    names = [Path(p).name for p in packages]
    assert names[0] == "vpnshop"
    assert all(n == "vpnshop" or n.startswith("vpnshop_") for n in names), names
    assert all((ROOT / p / "__init__.py").exists() for p in packages)
