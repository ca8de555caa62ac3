"""Launch a campaign: record the run, then plan it into batches of queued deliveries.

A run is identified by (campaign, run key). Launching the same run again is a resume: a
delivery is unique per (profile, run, channel), so planning inserts only people not yet in the
run and the send jobs send only what is still queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.models import Campaign, CampaignRun
from ecrm.campaigns.spec import CampaignSpec
from ecrm.db import utcnow
from ecrm.deliveries.batches import reopen_batches
from ecrm.queue import JobQueue
from ecrm.runtime import Runtime
from ecrm.segments.compile import compile_audience
from ecrm.segments.stream import stream_members
from ecrm.types import RunStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRef:
    run_id: int
    campaign: str
    run_key: str
    created: bool


async def create_run(sessions: async_sessionmaker[AsyncSession], spec: CampaignSpec, source: str,
                     run_key: str | None = None) -> RunRef:
    """Store the campaign's spec and get (or create) the run for `run_key`."""
    run_key = run_key or spec.run_key()
    payload = spec.model_dump(mode="json")
    async with sessions.begin() as session:
        campaign = await session.scalar(select(Campaign).where(Campaign.name == spec.name))
        if campaign is None:
            campaign = Campaign(name=spec.name, source=source, spec=payload)
            session.add(campaign)
            await session.flush()
        else:
            campaign.spec, campaign.source = payload, source
        run = await session.scalar(select(CampaignRun).where(
            CampaignRun.campaign_id == campaign.id, CampaignRun.run_key == run_key))
        if run is not None:
            return RunRef(run.id, spec.name, run_key, created=False)
        scheduled = spec.schedule if spec.schedule != "now" else utcnow()
        run = CampaignRun(campaign_id=campaign.id, run_key=run_key, spec=payload, scheduled_at=scheduled)
        session.add(run)
        await session.flush()
        return RunRef(run.id, spec.name, run_key, created=True)


async def enqueue_plan(queue: JobQueue, run: RunRef, spec: CampaignSpec) -> None:
    defer_until = None if spec.schedule == "now" else spec.schedule
    await queue.enqueue("plan_run", run.run_id, _defer_until=defer_until)


async def plan_run(runtime: Runtime, run_id: int) -> int:
    """Queue a delivery for every audience member not yet in the run, batch by batch; each batch
    is enqueued as soon as it is queued, so sending starts while the audience is still read."""
    spec = await load_run_spec(runtime, run_id)
    query = compile_audience(spec.audience, spec.kind)
    sessions = runtime.sessions
    async with sessions.begin() as session:
        plan_no = await _start(session, run_id)
        batches = await reopen_batches(session, run_id)
    for number in range(batches):
        await _enqueue_batch(runtime, run_id, number, plan_no)
    async for ids in stream_members(sessions, query, runtime.settings.send.batch_size):
        if await runtime.batches.queue_members(run_id, batches, ids, spec.channel):
            await _enqueue_batch(runtime, run_id, batches, plan_no)
            batches += 1
    async with sessions.begin() as session:
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id).values(planned_at=utcnow()))
    await runtime.batches.close(run_id, None)
    logger.info("run %d planned: %d batches", run_id, batches)
    return batches


async def _start(session: AsyncSession, run_id: int) -> int:
    run = await session.get_one(CampaignRun, run_id)
    run.status, run.started_at = RunStatus.RUNNING, run.started_at or utcnow()
    run.finished_at = run.planned_at = None
    run.plans += 1
    return run.plans


async def _enqueue_batch(runtime: Runtime, run_id: int, batch: int, plan_no: int) -> None:
    await runtime.queue.enqueue("send_batch", run_id, batch, _job_id=f"send:{run_id}:{batch}:{plan_no}")


async def load_run_spec(runtime: Runtime, run_id: int) -> CampaignSpec:
    key = ("spec", run_id)
    spec = runtime.cache.get(key)
    if spec is None:
        async with runtime.sessions() as session:
            run = await session.get_one(CampaignRun, run_id)
            spec = runtime.cache[key] = CampaignSpec.model_validate(run.spec)
    return cast(CampaignSpec, spec)
