"""The server process's group-commit writer for shop webhooks (ecrm.api.group_commit):
concurrent deliveries are stored in one transaction, then one `map_webhooks` job is queued to
map what is stored and not mapped yet (ecrm.shops.jobs).

A delivery is answered only after its transaction committed. Its (provider, delivery id) is
the writer's key, so copies of one delivery are never in two flushes at once: a copy in a
later flush finds the committed row, copies in one flush are told apart by `record_webhooks`,
and either way only the first is stored and the others are duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.group_commit import GroupCommit
from ecrm.queue import JobQueue
from ecrm.shops.jobs import MAP_JOB
from ecrm.shops.store import WebhookWrite, record_webhooks

logger = logging.getLogger(__name__)


class WebhookWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], jobs: JobQueue) -> None:
        self._sessions, self._jobs = sessions, jobs
        self.writes: GroupCommit[WebhookWrite, int | None] = GroupCommit(self._flush, key=lambda write: write.key)

    async def submit(self, write: WebhookWrite) -> int | None:
        """The stored row's id once committed, or None when the delivery was stored before."""
        return await self.writes.submit(write)

    async def close(self) -> None:
        await self.writes.close()

    async def _flush(self, writes: Sequence[WebhookWrite]) -> list[int | None]:
        async with self._sessions.begin() as session:
            ids = await record_webhooks(session, writes)
        stored = sum(webhook_id is not None for webhook_id in ids)
        if stored:
            await self._enqueue(stored)
        return ids

    async def _enqueue(self, stored: int) -> None:
        try:
            await self._jobs.enqueue(MAP_JOB)
        except Exception:  # stored already (never raise after the commit): `ecrm shop retry` maps what no job did
            logger.exception("%d webhooks stored but no job queued to map them", stored)
