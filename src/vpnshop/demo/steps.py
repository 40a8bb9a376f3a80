"""Named, checked steps: the demo's verdict is that every step checked out."""

from __future__ import annotations

import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TextIO

import attrs


class StepFailed(Exception):
    """A check of a step did not hold; the message says what was expected and seen."""


def check(condition: bool, what: str) -> None:
    """Raise :class:`StepFailed` naming *what* unless *condition* holds."""
    if not condition:
        raise StepFailed(what)


@attrs.define
class Outcome:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@attrs.define
class Steps:
    """Runs steps in order and stops at the first that fails (later ones depend on it)."""

    out: TextIO
    outcomes: list[Outcome] = attrs.field(factory=list)

    @property
    def failed(self) -> Outcome | None:
        return next((o for o in self.outcomes if not o.ok), None)

    async def run(self, name: str, step: Callable[[], Awaitable[str]]) -> bool:
        """Run *step* (which returns a one-line summary) unless an earlier one failed."""
        if self.failed is not None:
            return False
        started = time.monotonic()
        try:
            summary = await step()
        except (StepFailed, AssertionError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            self.outcomes.append(Outcome(name, False, time.monotonic() - started, detail))
            print(f"FAIL  {name}: {detail}", file=self.out, flush=True)
            return False
        except Exception as exc:  # our bug: show where, then stop
            detail = f"unexpected {type(exc).__name__}: {exc}"
            self.outcomes.append(Outcome(name, False, time.monotonic() - started, detail))
            trace = "".join(traceback.format_exception(exc))
            print(f"FAIL  {name}: {detail}\n{trace}", file=self.out, flush=True)
            return False
        elapsed = time.monotonic() - started
        self.outcomes.append(Outcome(name, True, elapsed, summary))
        print(f"ok    {name}: {summary} ({elapsed:.1f} s)", file=self.out, flush=True)
        return True
