"""What a process needs to run jobs: settings, clock, database, templates, channels, the queue,
and what it keeps per send.

Built once at the edge (the CLI, an arq worker's startup) and handed to every job in its
context, so no job opens its own engine or provider connections. It is an async context
manager: leaving it closes every channel, the send path's pool and, if the runtime opened it,
the engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.channels.registry import Channels
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.db import create_engine, session_factory
from ecrm.deliveries.batch_store import BatchStore
from ecrm.deliveries.batch_store_pg import PgBatchStore
from ecrm.deliveries.batch_store_sql import SqlBatchStore
from ecrm.deliveries.sends import SendRef
from ecrm.lru import LruCache
from ecrm.queue import JobQueue
from ecrm.render.composer import Composer
from ecrm.render.environment import TemplateCatalog
from ecrm.settings import Settings

logger = logging.getLogger(__name__)
SENDS_KEPT = 64  # sends a process keeps a composer for; a worker sees a few at a time


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    catalog: TemplateCatalog
    channels: Channels
    queue: JobQueue
    batches: BatchStore
    owns_engine: bool = True
    composers: LruCache[int, Composer[Any]] = field(default_factory=lambda: LruCache(SENDS_KEPT))
    sends: LruCache[int, SendRef] = field(default_factory=lambda: LruCache(SENDS_KEPT))

    async def warm(self) -> None:
        """What a worker does once at start-up rather than inside its first jobs: compile the
        templates and open the database pool. A broken template is logged; launching a
        campaign that uses it is refused."""
        for error in self.catalog.warm():
            logger.warning("template not compiled at start-up: %s", error)
        await self.batches.warm()

    async def close(self) -> None:
        await self.channels.close()
        await self.batches.aclose()
        if self.owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()


def open_runtime(settings: Settings, queue: JobQueue, engine: AsyncEngine | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> Runtime:
    """A runtime for `settings`; an `engine` passed in stays open when the runtime closes."""
    owned = engine is None
    engine = engine or create_engine(settings.database_url)
    return Runtime(settings, clock, engine, session_factory(engine), TemplateCatalog(settings.templates_dir),
                   Channels(settings), queue, open_batch_store(engine, clock), owns_engine=owned)


def open_batch_store(engine: AsyncEngine, clock: Clock) -> BatchStore:
    """PostgreSQL's own store where it runs; SQLAlchemy Core for SQLite."""
    if engine.dialect.name == "postgresql":
        return PgBatchStore(engine.url.render_as_string(hide_password=False), clock)
    return SqlBatchStore(engine, clock)


class JobContext(TypedDict, total=False):
    """arq's job context, with our runtime added at worker start-up."""

    runtime: Runtime
    job_try: int
    job_id: str
