"""Helper processes of the benchmarks (emulators, servers) that stop when their standard
input closes (not a benchmark itself)."""

from __future__ import annotations

import asyncio


async def end_child(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """Close the child's stdin (its signal to stop), wait up to *grace* seconds for it to
    exit, then kill it."""
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()
