"""The Remnawave emulator in its own process, for the benchmarks (not a benchmark).

In production the panel is another machine: its CPU is not the shop's, and its event
loop does not compete with the shop's. A thread in the benchmark's process would still
share the GIL with the code under measurement, so every panel answer would also cost the
shop a GIL hand-over; a process of its own shares nothing but the loopback.

Protocol on stdin/stdout: it prints ``ready <base_url> <token>`` once it listens, and
exits when stdin reaches its end (the parent closed it or died). Bounded: it exits on its
own after ``--lifetime`` seconds.

    python bench/_panel_process.py --version 3.3.2
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from vpnshop.testing.remnawave import RemnawaveEmulator


async def serve(version: str, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    async with RemnawaveEmulator(version) as panel:
        print(f"ready {panel.base_url} {panel.token}", flush=True)
        eof = loop.run_in_executor(None, sys.stdin.read)  # returns when stdin closes
        await asyncio.wait_for(eof, lifetime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="3.3.2", help="the panel version to speak")
    parser.add_argument("--lifetime", type=float, default=900.0, help="seconds, at most")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.version, args.lifetime))
    except TimeoutError:
        print("panel process: lifetime reached", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
