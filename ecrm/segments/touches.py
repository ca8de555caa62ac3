"""The ingest side of entry and exit: the API notes each profile an event or order touched,
after its transaction committed, and a background task hands them on: at once when it is
idle, and under load in batches at most every `DELAY` seconds (what arrives while one batch is
handed on waits for the next), either as one `segments_touched` job on the queue (arq on Redis) or,
without Redis, by refreshing them in this process.

Noting is a set insert: the request neither waits for the refresh nor fails with it; a failed
hand-over is logged and the next scheduled refresh catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)
DELAY = 0.05  # seconds between hand-overs under load: ~20 jobs a second at most, whatever the ingest rate
MAX_BATCH = 5000

Flush = Callable[[list[int]], Awaitable[object]]


class Touches:
    def __init__(self, flush: Flush, delay: float = DELAY) -> None:
        self.flush = flush
        self.delay = delay
        self._pending: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def touch(self, profile_id: int) -> None:
        self._pending.add(profile_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    async def settled(self) -> None:
        """Wait until every id noted so far has been handed on (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        await self.settled()

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # the touches of requests answered in this same loop turn join in
        while self._pending:
            batch = sorted(self._pending)[:MAX_BATCH]
            self._pending.difference_update(batch)
            try:
                await self.flush(batch)
            except Exception:
                logger.exception("segment refresh of %d touched profiles not handed on; the next scheduled "
                                 "refresh of every segment catches up", len(batch))
            if self._pending:
                await asyncio.sleep(self.delay)
