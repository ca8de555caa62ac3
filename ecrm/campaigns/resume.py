"""Send a run again from its stored spec, once nobody is sending it: what is still queued goes
out, and, as an operator's explicit choice, so do the deliveries in doubt (`unknown`: they may
have reached the provider, so some recipients may get a second copy).

A launch that is resumed plans the audience again, so profiles that joined it since are added,
as with `ecrm campaign launch FILE --run KEY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import RunRef
from ecrm.campaigns.liveness import why_stopped
from ecrm.campaigns.models import CampaignRun
from ecrm.campaigns.report import find_run
from ecrm.campaigns.spec import CampaignSpec
from ecrm.clock import Clock
from ecrm.deliveries.claims import settle_abandoned
from ecrm.deliveries.sends import requeue_in_doubt, sends_of
from ecrm.errors import EcrmError
from ecrm.types import RunStatus, SendSource


@dataclass(frozen=True)
class Resumption:
    run: RunRef
    spec: CampaignSpec
    requeued: int  # deliveries in doubt queued again


class StillSendingError(EcrmError):
    """The run is being sent right now; resuming it alongside would only race its sender."""


async def prepare_resume(sessions: async_sessionmaker[AsyncSession], campaign: str, run_key: str | None,
                         clock: Clock, *, in_doubt: bool = False) -> Resumption:
    """Check nobody sends the run, and with `in_doubt` queue its `unknown` deliveries again
    (first marking as in doubt any chunk its dead launcher left in flight)."""
    now = clock.now()
    async with sessions.begin() as session:
        run = await find_run(session, campaign, run_key)
        _refuse_if_sending(run, campaign, why_stopped(run, now) is not None)
        requeued = 0
        if in_doubt:
            requeued = await _requeue(session, run.id, now)
        ref = RunRef(run.id, campaign, run.run_key, created=False)
        return Resumption(ref, CampaignSpec.model_validate(run.spec), requeued)


async def stored_spec(sessions: async_sessionmaker[AsyncSession], campaign: str, run_key: str | None) -> CampaignSpec:
    """The campaign as the run was first launched."""
    async with sessions() as session:
        return CampaignSpec.model_validate((await find_run(session, campaign, run_key)).spec)


def _refuse_if_sending(run: CampaignRun, campaign: str, stopped: bool) -> None:
    if run.status != RunStatus.RUNNING or stopped:
        return
    by = f"by {run.launcher}" if run.launcher else "by arq workers"
    raise StillSendingError(f"run '{run.run_key}' of '{campaign}' is being sent right now ({by}); wait until "
                            f"`ecrm campaign status {campaign} --run {run.run_key}` says done or stopped")


async def _requeue(session: AsyncSession, run_id: int, now: datetime) -> int:
    connection = await session.connection()
    requeued = 0
    for send in await sends_of(session, SendSource.CAMPAIGN_RUN, run_id):
        await settle_abandoned(connection, send.id, now)
        requeued += await requeue_in_doubt(session, send.id)
    return requeued
