"""nox sessions, for those who prefer nox; `python3 dev.py test` runs the same checks."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    sources = ["src", "shells", "tests", "bench", "dev.py", "noxfile.py"]
    session.run("ruff", "format", "--check", *sources)
    session.run("ruff", "check", *sources)
    session.run("lint-imports")
    session.run("interrogate", "tests")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    for script in sorted(__import__("pathlib").Path("bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
