"""Where the API hands the profiles ingest touched: a `segments_touched` job on arq (the pool
opened on first use, so the API starts and takes events while Redis is down), or, with no
Redis, a refresh run right here in the API process.

The job goes on the transactional queue, not the campaigns': `ecrm worker --transactional`
polls it every 10 ms and runs no campaign batches, so entry and exit events follow an event by
tens of milliseconds even while a large campaign keeps the campaign workers busy.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.queue import TRANSACTIONAL_QUEUE, LazyArqQueue
from ecrm.segments.jobs import touched
from ecrm.settings import Settings


class EnqueueTouched:
    """With Redis: one job per batch (a Redis that is down costs this batch, not seconds of
    waiting ids: the queue connects with one try)."""

    def __init__(self, redis_url: str) -> None:
        self.queue = LazyArqQueue(redis_url, TRANSACTIONAL_QUEUE)

    async def __call__(self, profile_ids: list[int]) -> None:
        await self.queue.enqueue("segments_touched", profile_ids)

    async def close(self) -> None:
        await self.queue.close()


class RefreshTouched:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.settings, self.sessions, self.clock = settings, sessions, clock

    async def __call__(self, profile_ids: list[int]) -> None:
        await touched(self.settings, self.sessions, profile_ids, self.clock.now())

    async def close(self) -> None:
        return None
