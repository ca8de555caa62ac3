"""What a process needs to run jobs: settings, database, templates, channels and the queue.

Built once at the edge (the CLI, an arq worker's startup) and handed to every job in its
context, so no job opens its own engine or SMTP connections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.channels.registry import Channels
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.db import create_engine, session_factory
from ecrm.deliveries.batch_store import BatchStore
from ecrm.deliveries.batch_store_pg import PgBatchStore
from ecrm.deliveries.batch_store_sql import SqlBatchStore
from ecrm.queue import JobQueue
from ecrm.render.environment import TemplateCatalog
from ecrm.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    catalog: TemplateCatalog
    channels: Channels
    queue: JobQueue
    batches: BatchStore
    clock: Clock = SYSTEM_CLOCK
    cache: dict[Any, Any] = field(default_factory=dict)

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
        await self.engine.dispose()


def open_runtime(settings: Settings, queue: JobQueue, engine: AsyncEngine | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> Runtime:
    engine = engine or create_engine(settings.database_url)
    return Runtime(settings, engine, session_factory(engine), TemplateCatalog(settings.templates_dir),
                   Channels(settings), queue, open_batch_store(engine), clock)


def open_batch_store(engine: AsyncEngine) -> BatchStore:
    """PostgreSQL's own store where it runs; SQLAlchemy Core for any other database."""
    if engine.dialect.name == "postgresql":
        return PgBatchStore(engine.url.render_as_string(hide_password=False))
    return SqlBatchStore(engine)


class JobContext(TypedDict, total=False):
    """arq's job context, with our runtime added at worker start-up."""

    runtime: Runtime
    job_try: int
    job_id: str
