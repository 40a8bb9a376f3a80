"""The cyclic garbage collector, set for a long-running server process.

CPython's collector walks every tracked object of the generations it collects. A shell's
process holds ~280,000 tracked objects once it has started (aiogram's and pydantic's
models, SQLAlchemy, the App), none of which ever becomes garbage, and each full collection
walked all of them: 170-570 ms a time on these machines, several times a minute on a busy
bot. The youngest generation was collected every 700 net allocations, every two or three
updates of "my subscription". bench/bench_bot.py measured the collector at ~1.1 ms of
that screen's CPU per update, and 0.3 ms after ``settle_heap``.

``settle_heap()``, once start-up is over: freeze what start-up built (``gc.freeze``: never
walked again, never freed, which it would not have been anyway), and collect the youngest
generation every ``GEN0_THRESHOLD`` allocations. Cycles made later are still found and
freed; the process only stops re-proving that its own code is alive. It does not collect
first: that full collection took 0.36 s of the bot's start and found 41 objects.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000  # CPython's default is 700; the older generations keep theirs


def settle_heap() -> None:
    """Freeze the objects that start-up left and collect the young less often; call it
    once the process has imported and built what it runs on, before it serves."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
