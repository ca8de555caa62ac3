"""Launch a campaign: record the run, plan it into its send's batches of queued deliveries, and
mark the run done when its send is.

A run is identified by (campaign, run key). Launching the same run again is a resume: the run
keeps its send, a delivery is unique per (profile, send, channel), so planning inserts only
people not yet in it, and the send jobs send only what is still queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.fallback import channel_audience
from ecrm.campaigns.models import Campaign, CampaignRun
from ecrm.campaigns.spec import CampaignSpec
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.deliveries.sends import SendRef, mark_planned, open_send, replan, sends_of
from ecrm.queue import JobQueue
from ecrm.runtime import Runtime
from ecrm.segments.rankings import rank_age, ranked
from ecrm.segments.stream import stream_members
from ecrm.types import RunStatus, SendSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRef:
    run_id: int
    campaign: str
    run_key: str
    created: bool


async def create_run(sessions: async_sessionmaker[AsyncSession], spec: CampaignSpec, source: str,
                     run_key: str | None = None, *, clock: Clock = SYSTEM_CLOCK) -> RunRef:
    """Store the campaign's spec and get (or create) the run for `run_key`."""
    run_key, now = run_key or spec.run_key(), clock.now()
    payload = spec.model_dump(mode="json")
    async with sessions.begin() as session:
        campaign = await session.scalar(select(Campaign).where(Campaign.name == spec.name))
        if campaign is None:
            campaign = Campaign(name=spec.name, source=source, spec=payload, created_at=now, updated_at=now)
            session.add(campaign)
            await session.flush()
        else:
            campaign.spec, campaign.source, campaign.updated_at = payload, source, now
        run = await session.scalar(select(CampaignRun).where(
            CampaignRun.campaign_id == campaign.id, CampaignRun.run_key == run_key))
        if run is not None:
            return RunRef(run.id, spec.name, run_key, created=False)
        scheduled = spec.schedule if spec.schedule != "now" else now
        run = CampaignRun(campaign_id=campaign.id, run_key=run_key, spec=payload, scheduled_at=scheduled)
        session.add(run)
        await session.flush()
        return RunRef(run.id, spec.name, run_key, created=True)


async def enqueue_plan(queue: JobQueue, run: RunRef, spec: CampaignSpec) -> None:
    defer_until = None if spec.schedule == "now" else spec.schedule
    await queue.enqueue("plan_run", run.run_id, _defer_until=defer_until)


async def plan_run(runtime: Runtime, run_id: int) -> int:
    """Queue a delivery for every audience member not yet in the run, batch by batch, in the send
    of the channel it gets (`campaigns.fallback`: one send per channel of the campaign); each
    batch is enqueued as soon as it is queued, so sending starts while the audience is still read."""
    spec = await load_run_spec(runtime.sessions, run_id)
    sessions, now = runtime.sessions, runtime.clock.now()
    async with sessions.begin() as session:
        plan_no = await _start(session, run_id, now)
        sends = [await open_send(session, SendSource.CAMPAIGN_RUN, run_id, kind, spec.template, spec.name, now)
                 for kind in spec.kinds]
        counts = [await replan(session, send.id) for send in sends]
    for send, count in zip(sends, counts, strict=True):
        for number in range(count):
            await _enqueue_batch(runtime, send.id, number, plan_no)
    audience = await ranked(sessions, spec.audience, now, rank_age(runtime.settings))
    for index, send in enumerate(sends):
        others = [other.id for other in sends if other is not send]
        query = channel_audience(audience, spec.kinds, index, now, others)
        counts[index] = await _plan_send(runtime, send, query, counts[index], plan_no)
    done = [await runtime.batches.close(send.id, None) for send in sends]
    if all(done):
        await finish_run(runtime, run_id)
    logger.info("run %d planned: %d batches", run_id, sum(counts))
    return sum(counts)


async def _plan_send(runtime: Runtime, send: SendRef, query: Select[int], batches: int, plan_no: int) -> int:
    """Queue the members `query` streams into `send` from batch number `batches` on; mark it
    planned; return its number of batches."""
    async for ids in stream_members(runtime.sessions, query, runtime.settings.send.batch_size):
        if await runtime.batches.queue_members(send.id, batches, ids, send.channel):
            await _enqueue_batch(runtime, send.id, batches, plan_no)
            batches += 1
    async with runtime.sessions.begin() as session:
        await mark_planned(session, send.id, runtime.clock.now())
    return batches


async def finish_run(runtime: Runtime, run_id: int) -> bool:
    """Mark the run done if every send of it is; its finish time is its last send's. Called when
    a send of the run is done (`send_done`); a second call changes nothing."""
    async with runtime.sessions.begin() as session:
        sends = await sends_of(session, SendSource.CAMPAIGN_RUN, run_id)
        finished = [send.done_at for send in sends]
        if not finished or any(at is None for at in finished):
            return False
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id, CampaignRun.status != RunStatus.DONE)
                              .values(status=RunStatus.DONE, finished_at=max(at for at in finished if at)))
    return True


async def _start(session: AsyncSession, run_id: int, now: datetime) -> int:
    run = await session.get_one(CampaignRun, run_id)
    run.status, run.started_at = RunStatus.RUNNING, run.started_at or now
    run.finished_at = None
    run.plans += 1
    return run.plans


async def _enqueue_batch(runtime: Runtime, send_id: int, batch: int, plan_no: int) -> None:
    await runtime.queue.enqueue("send_batch", send_id, batch, _job_id=f"send:{send_id}:{batch}:{plan_no}")


async def load_run_spec(sessions: async_sessionmaker[AsyncSession], run_id: int) -> CampaignSpec:
    async with sessions() as session:
        run = await session.get_one(CampaignRun, run_id)
        return CampaignSpec.model_validate(run.spec)
