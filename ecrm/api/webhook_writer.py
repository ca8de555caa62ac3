"""The server process's group-commit writer for shop webhooks (ecrm.api.group_commit):
concurrent deliveries are stored in one transaction (on PostgreSQL, one statement on a raw
asyncpg pool: `shops.store_pg`); then a `map_webhooks` job is queued to map what is stored
and not mapped yet (ecrm.shops.jobs).

A delivery is answered only after its transaction committed. Its (provider, delivery id) is
the writer's key, so copies of one delivery are never in two flushes at once: a copy in a
later flush finds the committed row, copies in one flush are told apart by `record_webhooks`,
and either way only the first is stored and the others are duplicates.

The mapping job is not queued per commit: the job maps everything still `received`, so
`MapKicker` queues one at once after a quiet spell, then at most once per `interval`
while commits go on (always once after the last commit). Under load the mapping runs in big batches
now and then instead of small ones all the time, beside the acknowledgements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.group_commit import GroupCommit
from ecrm.queue import JobQueue
from ecrm.shops.jobs import MAP_JOB
from ecrm.shops.store import WebhookWrite, record_webhooks
from ecrm.shops.store_pg import PgWebhookStore

logger = logging.getLogger(__name__)
KICK_INTERVAL = 0.2  # seconds between two kicks of the mapping on arq while webhooks arrive


class MapKicker:
    """Calls `enqueue` after `poke()`: at once when none ran within `interval`, else when it is
    over; pokes meanwhile share that call, and a poke is never left without one after it."""

    def __init__(self, enqueue: Callable[[], Awaitable[None]], interval: float) -> None:
        self._enqueue, self.interval = enqueue, interval
        self._due = False
        self._hurry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._due = True
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="map-kicker")

    async def flush(self) -> None:
        """Make the call a poke waits for now, and wait for it (on close, and for tests)."""
        if self._task is not None:
            self._hurry.set()
            await self._task
            self._hurry.clear()

    async def _run(self) -> None:
        try:
            while self._due:
                self._due = False
                await self._enqueue()
                if not self._hurry.is_set():
                    with contextlib.suppress(TimeoutError):  # the interval is over
                        await asyncio.wait_for(self._hurry.wait(), self.interval)
        finally:
            self._task = None


class WebhookWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], jobs: JobQueue,
                 pg: PgWebhookStore | None = None, kick_interval: float = KICK_INTERVAL) -> None:
        self._sessions, self._jobs, self._pg = sessions, jobs, pg
        self.writes: GroupCommit[WebhookWrite, int | None] = GroupCommit(self._flush, key=lambda write: write.key)
        self.kicker = MapKicker(self._enqueue, kick_interval)

    async def submit(self, write: WebhookWrite) -> int | None:
        """The stored row's id once committed, or None when the delivery was stored before."""
        return await self.writes.submit(write)

    async def settle(self) -> None:
        """Queue now the mapping job the webhooks stored so far wait for."""
        await self.kicker.flush()

    async def close(self) -> None:
        await self.writes.close()
        await self.kicker.flush()
        if self._pg is not None:
            await self._pg.close()

    async def _flush(self, writes: Sequence[WebhookWrite]) -> list[int | None]:
        if self._pg is not None:
            ids = await self._pg.record(writes)
        else:
            async with self._sessions.begin() as session:
                ids = await record_webhooks(session, writes)
        if any(webhook_id is not None for webhook_id in ids):
            self.kicker.poke()
        return ids

    async def _enqueue(self) -> None:
        try:  # one job: mappers take turns (ecrm.shops.jobs), a second would only wait
            await self._jobs.enqueue(MAP_JOB)
        except Exception:  # stored already (never raise after the commit): `ecrm shop retry` maps what no job did
            logger.exception("webhooks stored but no job queued to map them")
