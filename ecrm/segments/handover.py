"""Where the API hands the profiles ingest touched: a `segments_touched` job on arq (the pool
opened on first use, so the API starts and takes events while Redis is down), or, with no
Redis, a refresh run right here in the API process.
"""

from __future__ import annotations

import dataclasses

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.segments.jobs import touched
from ecrm.settings import Settings


class EnqueueTouched:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._redis: ArqRedis | None = None

    async def __call__(self, profile_ids: list[int]) -> None:
        if self._redis is None:
            # no retries: a Redis that is down costs this batch, not seconds of waiting ids
            settings = dataclasses.replace(RedisSettings.from_dsn(self.redis_url), conn_retries=0)
            self._redis = await create_pool(settings)
        await self._redis.enqueue_job("segments_touched", profile_ids)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class RefreshTouched:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.settings, self.sessions, self.clock = settings, sessions, clock

    async def __call__(self, profile_ids: list[int]) -> None:
        await touched(self.settings, self.sessions, profile_ids, self.clock.now())

    async def close(self) -> None:
        return None
