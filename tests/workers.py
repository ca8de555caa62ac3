"""arq in the test's own process, on the test Redis: settings that queue there, a campaign
launched onto the queue, and burst workers that run until their queue is empty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arq import ArqRedis, Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.queue import ArqQueue
from ecrm.settings import Settings
from ecrm.worker import make_worker
from tests.conftest import REDIS_URL


def with_redis(settings: Settings, **send: Any) -> Settings:
    """`settings` queueing on the test Redis (the `redis` fixture), with `send` fields changed."""
    return settings.model_copy(update={"redis_url": REDIS_URL, "send": settings.send.model_copy(update=send)})


async def launch_on_arq(settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession],
                        campaign: Path) -> int:
    """Create a run of `campaign` and enqueue its plan, as `ecrm campaign launch` does with Redis; the run's id."""
    spec = load_campaign(campaign, settings)
    ref = await create_run(sessions, spec, str(campaign))
    await enqueue_plan(ArqQueue(redis), ref, spec)
    return ref.run_id


async def work_until_idle(settings: Settings, count: int = 1, make: Callable[..., Worker] = make_worker) -> None:
    """`count` burst workers side by side (campaign workers unless `make` builds another kind)
    until their queue is empty."""
    options: dict[str, Any] = {"burst": True, "poll_delay": 0, "handle_signals": False}
    workers = [make(settings, **options) for _ in range(count)]
    try:
        await asyncio.gather(*(worker.main() for worker in workers))
    finally:
        for worker in workers:
            await worker.close()
