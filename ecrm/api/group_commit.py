"""Group commit: concurrent requests hand their write to one writer task per process, which
stores everything pending in one transaction and only then answers each request.

A request parks on a future (`submit`). The writer takes what is pending (at most
`max_batch`, in arrival order) and calls `flush(items)`, which writes them in one transaction
and returns one outcome per item: a result, or an exception meant for that request alone (a
4xx it earned). Up to `concurrency` flushes run at once (a commit waits on the disk, and the
next batch need not wait for it); while they run, new requests queue up, so the batch size
follows the load: one request alone is written at once, 50 concurrent ones share a commit.

Items with the same `key` (a profile's external id) are never in two flushes at once: a later
one waits in the queue until the earlier one's flush is over, so they apply in arrival order.

If a flush raises, nothing of it was committed; each of its items is then flushed on its own,
so one request's failure (a 500) never becomes its neighbours'. Requests are answered only
after their transaction committed. On close the writer writes what is pending, then stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
Flush = Callable[[Sequence[I]], Awaitable[Sequence[R | Exception]]]
MAX_BATCH = 500


CONCURRENCY = 4


class GroupCommit(Generic[I, R]):
    def __init__(self, flush: Flush[I, R], max_batch: int = MAX_BATCH, concurrency: int = CONCURRENCY,
                 key: Callable[[I], Hashable] | None = None) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._key = key
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._busy: set[Hashable] = set()  # keys of the items being flushed
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.flushes = 0  # transactions committed or tried, for tests and metrics

    async def submit(self, item: I) -> R:
        """Write `item` with whatever else is pending; its result once committed (or its error)."""
        if self._closing:
            raise RuntimeError("the writer is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-commit")
        return await asyncio.shield(future)  # a hung-up client does not cancel its neighbours' write

    async def close(self) -> None:
        """Write what is pending, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not (self._closing and not self._pending and not self._running):
            await self._wake.wait()
            self._wake.clear()
            await self._start_flushes()

    async def _start_flushes(self) -> None:
        while self._pending:
            await self._slots.acquire()  # meanwhile more requests queue up: a bigger batch
            batch, keys = self._take()
            if not batch:  # all that is pending waits for keys a running flush holds
                self._slots.release()
                return
            self._running.add(asyncio.create_task(self._flush_batch(batch, keys)))

    def _take(self) -> tuple[list[tuple[I, asyncio.Future[R]]], set[Hashable]]:
        """The next batch in arrival order, leaving items whose key a running flush holds."""
        if self._key is None:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
            return batch, set()
        batch, waiting, keys = [], [], set()
        for entry in self._pending:
            key = self._key(entry[0])
            if key in self._busy or len(batch) >= self._max_batch:
                waiting.append(entry)
            else:
                batch.append(entry)
                keys.add(key)
        self._pending = waiting
        self._busy |= keys
        return batch, keys

    async def _flush_batch(self, batch: list[tuple[I, asyncio.Future[R]]], keys: set[Hashable]) -> None:
        try:
            await self._write(batch)
        finally:
            self._busy -= keys
            self._running.discard(asyncio.current_task())
            self._slots.release()
            self._wake.set()

    async def _write(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._outcomes([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:  # one bad item must not fail the others: each on its own
                for one in batch:
                    await self._write([one])
                return
            outcomes = [exc]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _outcomes(self, items: list[I]) -> Sequence[R | Exception]:
        self.flushes += 1
        outcomes = await self._flush(items)
        if len(outcomes) != len(items):
            raise RuntimeError(f"a flush of {len(items)} items returned {len(outcomes)} outcomes")
        return outcomes

