#!/usr/bin/env python3
"""The developer entry point; needs nothing but Python 3.11+ and access to PyPI.

    python3 dev.py run     # create .venv, install vpnshop, run the offline demo of the shop
    python3 dev.py run all # the real shop on embedded SQLite (`vpnshop run all`); Ctrl-C stops
    python3 dev.py test    # the whole suite: format, lint, types, architecture, docstrings, tests
    python3 dev.py bench   # the benchmarks in bench/

The virtual environment is made once and refreshed when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".vpnshop-installed"


def sh(*cmd: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check).returncode


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"vpnshop needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    sh(*pip, "install", "-e", ".[dev]")
    STAMP.write_text(wanted)


def run(args: list[str]) -> int:
    """No arguments: ``vpnshop demo`` (the whole shop offline; it exits by itself).
    Otherwise ``vpnshop run ARGS`` (``all``, ``webhooks``, ``bot``, ``scheduler``)."""
    ensure_venv()
    if not args:
        return sh(BIN / "vpnshop", "demo", check=False)
    return sh(BIN / "vpnshop", "run", *args, check=False)


def test(args: list[str]) -> int:
    ensure_venv()
    sources = ["src", "shells", "tests", "bench", "dev.py", "noxfile.py"]
    steps = [
        [BIN / "ruff", "format", "--check", *sources],
        [BIN / "ruff", "check", *sources],
        [BIN / "lint-imports"],
        [BIN / "mypy"],
        [BIN / "interrogate", "tests"],  # every test_* has its one-sentence docstring
        [BIN / "python", "-m", "pytest", *args],
    ]
    for step in steps:
        if sh(*step, check=False) != 0:
            print(f"FAILED: {' '.join(str(s) for s in step)}", flush=True)
            return 1
    return 0


def bench(args: list[str]) -> int:
    ensure_venv()
    status = 0
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        status |= sh(BIN / "python", script, *args, check=False)
    return status


COMMANDS = {"run": run, "test": test, "bench": bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
