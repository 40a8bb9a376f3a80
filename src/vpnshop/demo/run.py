"""``run_demo``: start the world, walk the journey, print the chat and the final state,
and say which step failed, if one did."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from vpnshop.demo.journey import ALICE, run_journey
from vpnshop.demo.state import print_state
from vpnshop.demo.steps import Steps
from vpnshop.demo.transcript import Transcript
from vpnshop.demo.world import demo_world


async def run_demo(out: TextIO = sys.stdout) -> int:
    """0 if every step checked out; 1 naming the failed step otherwise."""
    started = time.monotonic()
    print("vpnshop demo: the whole shop offline, against emulators on 127.0.0.1", file=out)
    steps = Steps(out)
    transcript = Transcript()
    async with demo_world() as world:
        print(
            f"shop running: webhooks {world.urls['webhooks']}, scheduler "
            f"{world.urls['scheduler']}, bot polling the Telegram emulator {world.tg.api_url}; "
            f"database {world.database}",
            file=out,
            flush=True,
        )
        await run_journey(world, steps, transcript)
        transcript.catch_up()
        print("\n== The chat, as the customers saw it ==", file=out)
        transcript.print(out)
        print("\n== Final state ==", file=out)
        await print_state(world.app, ALICE, out)
    failed = steps.failed
    elapsed = time.monotonic() - started
    print("", file=out)
    if failed is not None:
        print(f"demo FAILED at step {failed.name!r}: {failed.detail.splitlines()[0]}", file=out)
        return 1
    print(f"demo passed: {len(steps.outcomes)} steps checked out in {elapsed:.1f} s", file=out)
    return 0
