"""GroupCommit: items that arrive together run together; failures stay with their item."""

from __future__ import annotations

import asyncio

import pytest

from vpnshop.adapters.storage.group_commit import GroupCommit


class Unavailable(Exception):
    pass


class Recorder:
    """A ``run`` that records its batches; an item "bad" fails its whole batch, an item
    "down" is fatal, and an item "own-error" gets an exception of its own."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if "down" in items:
            raise Unavailable("the database is away")
        if "bad" in items:
            raise ValueError("a constraint")
        return [ValueError("mine") if i == "own-error" else i.upper() for i in items]


async def test_the_first_item_runs_at_once_and_later_ones_wait_together() -> None:
    """An idle group runs the first item alone; what arrives while it runs goes in one
    batch, up to max_batch."""
    run = Recorder()
    run.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(run, max_batch=3, max_inflight=1)
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(group.submit(x)) for x in "bcde"]
    await asyncio.sleep(0.01)
    run.gate.set()
    assert await first == "A"
    assert [await t for t in rest] == ["B", "C", "D", "E"]
    assert run.batches == [["a"], ["b", "c", "d"], ["e"]]
    assert (group.batches, group.items, group.retried) == (3, 5, 0)


async def test_a_failed_batch_is_run_one_item_at_a_time() -> None:
    """A batch that raises is retried item by item: only the bad item fails, and an
    item's own exception reaches only its caller."""
    run = Recorder()
    run.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(run, max_inflight=1)
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(group.submit(x)) for x in ("b", "bad", "own-error", "c")]
    await asyncio.sleep(0.01)
    run.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[:2] == ["A", "B"] and results[4] == "C"
    assert isinstance(results[2], ValueError) and str(results[2]) == "a constraint"
    assert isinstance(results[3], ValueError) and str(results[3]) == "mine"
    assert run.batches[1] == ["b", "bad", "own-error", "c"]
    assert run.batches[2:] == [["b"], ["bad"], ["own-error"], ["c"]]
    assert group.retried == 1


async def test_a_fatal_error_fails_the_whole_batch_without_retrying() -> None:
    """An exception marked fatal (the database is away) reaches every caller in the
    batch at once: running them one by one would only fail again."""
    run = Recorder()
    run.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(run, fatal=(Unavailable,), max_inflight=1)
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(group.submit(x)) for x in ("b", "down")]
    await asyncio.sleep(0.01)
    run.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[0] == "A"
    assert all(isinstance(r, Unavailable) for r in results[1:])
    assert len(run.batches) == 2


async def test_an_item_queued_as_the_last_drain_stops_is_still_run() -> None:
    """An item submitted in the same loop turn in which the only drain saw an empty
    queue and stopped (before the task's done callback) gets a drain of its own."""
    release: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(items: list[int]) -> list[int | Exception]:
        if items == [1]:
            await release
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(run, max_inflight=1)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.01)
    release.set_result(None)  # the drain resumes first in the next turn, then stops...
    late = asyncio.create_task(group.submit(2))  # ...and this runs right after it
    assert await first == 1
    assert await asyncio.wait_for(late, 5) == 2


async def test_a_caller_that_gives_up_leaves_its_item_in_the_batch() -> None:
    """Cancelling a caller does not cancel the batch; aclose() waits for it."""
    run = Recorder()
    run.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(run)
    caller = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    run.gate.set()
    await group.aclose()
    assert run.batches == [["a"]] and group.items == 1


def test_limits_must_be_positive() -> None:
    """A batch or in-flight limit below one is a programming error, refused at once."""
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Recorder(), max_batch=0)
