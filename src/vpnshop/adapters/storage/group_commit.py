"""Group commit: work that arrives while a transaction runs goes together into the next one.

The payment settlers (``settle_pg_batch``, ``settle_sqlite``) put each confirmation through a
:class:`GroupCommit`. The first item is run at once, so an idle server adds no delay;
items that arrive while ``max_inflight`` batches are running wait and go together, up to
``max_batch``, so a busy server pays one round trip, one statement execution and one
commit for many items instead of one each.

``run(batch)`` returns one result per item, in order; a result may be an exception,
which only that item's caller sees. When ``run`` raises, nothing of the batch may have
been applied (the batch is one transaction): each item is then run alone, so one bad
item fails only itself, unless the exception is one of ``fatal`` (the database is away:
every item would fail again).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import attrs

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")


@attrs.define
class _Waiting(Generic[I, R]):
    item: I
    done: asyncio.Future[R]


class GroupCommit(Generic[I, R]):
    def __init__(
        self,
        run: Callable[[list[I]], Awaitable[list[R | Exception]]],
        *,
        fatal: tuple[type[Exception], ...] = (),
        max_batch: int = 64,
        max_inflight: int = 2,
        name: str = "group-commit",
    ) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self._run = run
        self._fatal = fatal
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._name = name
        self._queue: collections.deque[_Waiting[I, R]] = collections.deque()
        self._drains: set[asyncio.Task[None]] = set()  # for aclose() to wait on
        self._draining = 0  # drains started and not yet stopped
        # Counted for the metrics, tests and benchmarks: batches that ran (a batch that
        # failed counts once in ``retried`` and then once per item run alone), and items.
        self.batches = 0
        self.items = 0
        self.retried = 0

    async def submit(self, item: I) -> R:
        """Run *item* in the next batch and return its result (or raise its exception).

        A caller that gives up does not stop the batch its item is in: the item is
        applied or not together with the batch."""
        waiting: _Waiting[I, R] = _Waiting(item, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if self._draining < self._max_inflight:
            # Counted here and uncounted by the drain itself as it stops, in the same
            # step in which it last saw an empty queue: counting done tasks instead
            # would miss an item queued between a drain's end and its done callback.
            self._draining += 1
            task = asyncio.create_task(self._drain(), name=self._name)
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await asyncio.shield(waiting.done)

    async def aclose(self) -> None:
        """Wait until every submitted item has been run."""
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            self._draining -= 1

    async def _drain_queue(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            try:
                results = await self._results([w.item for w in batch])
            except BaseException as e:
                for w in batch:
                    if not w.done.done():
                        w.done.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                continue
            for w, result in zip(batch, results, strict=True):
                if w.done.done():
                    continue
                if isinstance(result, Exception):
                    w.done.set_exception(result)
                else:
                    w.done.set_result(result)

    async def _results(self, items: list[I]) -> list[R | Exception]:
        try:
            results = await self._run(items)
        except self._fatal:
            raise
        except Exception as e:
            if len(items) == 1:
                raise
            log.info("%s: a batch of %d failed (%s); running each alone", self._name, len(items), e)
            self.retried += 1
        else:
            self.batches += 1
            self.items += len(items)
            return results
        alone: list[R | Exception] = []
        for item in items:
            try:
                alone.extend(await self._run([item]))
            except self._fatal:
                raise
            except Exception as e:
                alone.append(e)
            else:
                self.batches += 1
                self.items += 1
        return alone
