"""The webhook mapper process: how `ecrm serve --workers N` maps shop webhooks on PostgreSQL
when no Redis is configured.

Mapping on the API processes' own event loops took their CPU and held each loop 20-60 ms per
batch, so acknowledgements queued behind it (p99 ~100 ms at ~2,800 req/s). Instead `serve`
starts one more child, this mapper, at the lower CPU priority of `ecrm worker` (which maps
with Redis): the API processes only store and acknowledge, and the mapping takes what the cores
leave, as a worker does. It runs the same job code (`jobs.map_received`), so webhooks are still
mapped in the order received, one mapper's transaction at a time.

The API processes wake it with a NOTIFY on `CHANNEL` (`NotifyQueue`: the `map_webhooks` job of
the webhook writer, queued at most every `webhook_writer.KICK_INTERVAL` by each process). A
notification nobody listened for is lost, so the mapper maps everything still `received` when
it starts (a webhook stored while it was down is mapped when it comes back) and looks again
every `POLL` seconds anyway. If the database goes away it keeps trying: a mapper that exited
would make `serve` stop the API too (`serve.supervise`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.db import create_engine, session_factory
from ecrm.pg_pool import LazyPool, asyncpg_dsn
from ecrm.settings import Settings
from ecrm.shops.jobs import BATCH, MAP_JOB, map_received

logger = logging.getLogger(__name__)
CHANNEL = "ecrm_map_webhooks"
POLL = 5.0  # seconds between two looks when nobody notifies (a notification sent while no mapper listened)


class NotifyQueue:
    """The API side: the writer's `map_webhooks` job, queued as a NOTIFY the mapper listens for."""

    def __init__(self, database_url: str) -> None:
        self._pool = LazyPool(database_url, 1)

    async def enqueue(self, function: str, *_args: Any, _job_id: str | None = None,
                      _defer_until: datetime | None = None, _defer_by: float | None = None) -> bool:
        if function != MAP_JOB:
            raise KeyError(f"the webhook mapper runs {MAP_JOB!r} only, not {function!r}")
        await (await self._pool.get()).execute(f"NOTIFY {CHANNEL}")
        return True

    async def close(self) -> None:
        await self._pool.close()


class Mapper:
    """Maps what is `received`, then waits to be notified (or `poll` seconds) and maps again."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK, *, poll: float = POLL,
                 batch: int = BATCH) -> None:
        self.settings, self.clock, self.poll, self.batch = settings, clock, poll, batch
        self._woken = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def run(self) -> None:
        """Map until cancelled."""
        engine = create_engine(self.settings.database_url)
        try:
            await self._serve(session_factory(engine))
        finally:
            if self._listener is not None:
                await self._listener.close()
            await engine.dispose()

    async def _serve(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while True:
            await self._listen()  # before the look, so a webhook stored meanwhile wakes the next one
            self._woken.clear()
            try:
                await map_received(sessions, self.settings, self.clock.now(), self.batch)
            except Exception:
                logger.exception("webhooks not mapped; trying again in %.0f s", self.poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.poll)

    async def _listen(self) -> None:
        """Listen on `CHANNEL` unless this mapper already does on a live connection."""
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        listener: asyncpg.Connection | None = None
        try:
            listener = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
            await listener.add_listener(CHANNEL, self._wake)
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("not listening for new webhooks (%s); looking every %.0f s", exc, self.poll)
            if listener is not None:
                listener.terminate()
            return
        self._listener = listener

    def _wake(self, *_notification: object) -> None:
        self._woken.set()
