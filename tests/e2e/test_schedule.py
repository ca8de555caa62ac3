"""A campaign scheduled at a time is sent then, not before: in-process and on arq."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from pathlib import Path

from arq import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import create_run, enqueue_plan
from ecrm.campaigns.load import load_campaign
from ecrm.campaigns.models import CampaignRun
from ecrm.clock import SYSTEM_CLOCK, FrozenClock
from ecrm.local import launch_in_process
from ecrm.queue import ArqQueue
from ecrm.settings import Settings
from ecrm.worker import make_worker
from tests.conftest import REDIS_URL, ROOT
from tests.factories import add_profiles
from tests.smtp import SmtpServer
from tests.waiting import settle


def scheduled_campaign(tmp_path: Path, when: datetime) -> Path:
    text = (ROOT / "campaigns" / "welcome.yaml").read_text().replace("schedule: now", f"schedule: {when.isoformat()}")
    path = tmp_path / "scheduled.yaml"
    path.write_text(text)
    return path


async def test_an_in_process_launch_waits_for_the_scheduled_time(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer, tmp_path: Path,
    clock: FrozenClock,
) -> None:
    await add_profiles(sessions, 3)
    when = clock.now() + timedelta(hours=1)
    path = scheduled_campaign(tmp_path, when)
    launch = asyncio.create_task(
        launch_in_process(send_settings, load_campaign(path, send_settings), str(path), clock=clock))
    async with asyncio.timeout(20):
        await clock.until_sleeping()
    clock.set(when - timedelta(seconds=1))
    await settle()

    assert not launch.done() and clock.sleepers == 1
    assert smtp.handler.received == []
    assert await _started(sessions) == [None]

    clock.set(when)
    async with asyncio.timeout(30):
        ref, queue = await launch
    assert queue.failed == []
    assert len(smtp.handler.received) == 3
    assert ref.run_key == when.isoformat()
    async with sessions() as session:
        run = await session.get_one(CampaignRun, ref.run_id)
        assert run.scheduled_at == when and run.started_at == when


async def _started(sessions: async_sessionmaker[AsyncSession]) -> list[datetime | None]:
    async with sessions() as session:
        return list(await session.scalars(select(CampaignRun.started_at)))


async def test_an_arq_worker_does_not_start_a_run_before_its_time(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer, tmp_path: Path,
    redis: ArqRedis,
) -> None:
    await add_profiles(sessions, 3)
    settings = send_settings.model_copy(update={"redis_url": REDIS_URL})
    when = SYSTEM_CLOCK.now() + timedelta(hours=1)  # arq's worker defers on the real time
    spec = load_campaign(scheduled_campaign(tmp_path, when), settings)
    await enqueue_plan(ArqQueue(redis), await create_run(sessions, spec, "scheduled.yaml"), spec)
    worker = make_worker(settings, burst=True, poll_delay=0.05, handle_signals=False)
    with contextlib.suppress(TimeoutError):  # a deferred job keeps even a burst worker polling
        async with asyncio.timeout(1.0):
            await worker.main()
    await worker.close()
    (job,) = await redis.queued_jobs()
    assert job.function == "plan_run"
    assert job.score is not None and abs(job.score / 1000 - when.timestamp()) < 1
    assert smtp.handler.received == []
