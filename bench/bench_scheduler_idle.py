"""``vpnshop run scheduler``: start time and idle memory, next to a bare-imports floor.

Start time is from spawning the process to its "scheduler running" log line (the database
opened and migrated, /healthz listening, every job started); idle RSS is read from
/proc after it has idled for a few seconds. The floor is ``python -c "import aiohttp,
sqlalchemy"``: the interpreter and the two libraries every shell needs, its wall time to
exit and its peak RSS. Each is measured ROUNDS times, alternating, and the medians are
printed with the ratios. Targets: <= 1.5 s and <= 100 MiB. The scheduler runs on an
embedded SQLite file (the one-VPS default) with no panel and no providers configured.

    python bench/bench_scheduler_idle.py [--rounds 3] [--idle 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_START, TARGET_RSS_MIB = 1.5, 100.0
FLOOR = "import aiohttp, sqlalchemy"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def scheduler_once(idle: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPNSHOP_")}
        env.update(
            {
                "VPNSHOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/shop.db",
                "VPNSHOP_SCHEDULER_PORT": "0",
            }
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpnshop.cli", "run", "scheduler"],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "scheduler running" in line:
                    break
            else:
                raise RuntimeError("the scheduler exited before it ran")
            took = time.perf_counter() - started
            time.sleep(idle)
            rss = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        return took, rss


def floor_once() -> tuple[float, float]:
    """Wall time of the bare imports, and the RSS the process has after them."""
    report = "; print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", FLOOR + report], check=True, capture_output=True, text=True
    )
    took = time.perf_counter() - started
    return took, int(done.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before RSS")
    args = parser.parse_args()
    floors, products = [], []
    for _ in range(args.rounds):
        floors.append(floor_once())
        products.append(scheduler_once(args.idle))
    f_time = statistics.median(t for t, _ in floors)
    f_rss = statistics.median(r for _, r in floors)
    p_time = statistics.median(t for t, _ in products)
    p_rss = statistics.median(r for _, r in products)
    print(f"== vpnshop run scheduler, idle; medians of {args.rounds} rounds (SQLite, no panel)")
    print(f"   floor: python -c {FLOOR!r}")
    print(f"   start time {p_time:6.2f} s    floor {f_time:6.2f} s    {p_time / f_time:.1f}x")
    print(f"   idle RSS   {p_rss:6.1f} MiB  floor {f_rss:6.1f} MiB  {p_rss / f_rss:.1f}x")
    print(f"   rounds: {[f'{t:.2f}s/{r:.0f}MiB' for t, r in products]}")
    holds = p_time <= TARGET_START and p_rss <= TARGET_RSS_MIB
    print(
        f"   target <= {TARGET_START} s and <= {TARGET_RSS_MIB:.0f} MiB: "
        + ("HOLDS" if holds else "DOES NOT HOLD")
    )


if __name__ == "__main__":
    main()
