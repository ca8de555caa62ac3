"""Group commit: concurrent requests hand their write to one writer task per process, which
stores everything pending in one transaction and only then answers each request.

A request parks on a future (`submit`). The writer takes what is pending (at most
`max_batch`, in arrival order) and calls `flush(items)`, which writes them in one transaction
and returns one outcome per item: a result, or an exception meant for that request alone (a
4xx it earned). While a flush runs, new requests queue up for the next one, so the batch size
follows the load: one request alone is written at once, 50 concurrent ones share a commit.

If a flush raises, nothing of it was committed; each of its items is then flushed on its own,
so one request's failure (a 500) never becomes its neighbours'. Requests are answered only
after their transaction committed. On close the writer writes what is pending, then stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
Flush = Callable[[Sequence[I]], Awaitable[Sequence[R | Exception]]]
MAX_BATCH = 500


class GroupCommit(Generic[I, R]):
    def __init__(self, flush: Flush[I, R], max_batch: int = MAX_BATCH) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
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
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
                await self._write(batch)
            if self._closing:
                return

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

