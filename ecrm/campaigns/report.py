"""A campaign run's report: its status (and, for a run whose launcher died, why it stopped) and
its sends' deliveries, counted by locale, status and reason."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.liveness import why_stopped
from ecrm.campaigns.models import Campaign, CampaignRun
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.deliveries.claims import count_in_flight
from ecrm.deliveries.report import DeliveryCounts, count_deliveries
from ecrm.deliveries.sends import sends_of
from ecrm.errors import EcrmError
from ecrm.types import SendSource


@dataclass
class RunReport:
    campaign: str
    run_key: str
    status: str
    counts: DeliveryCounts
    source: str = ""  # the campaign file it was launched from
    stopped: str | None = None  # why a run marked running is not being sent any more
    in_flight: int = 0  # of a stopped run: queued, but being handed over when it stopped (in doubt)

    @property
    def by_locale(self) -> dict[str, dict[str, int]]:
        return self.counts.by_locale

    def total(self, status: str | None = None) -> int:
        return self.counts.total(status)


async def find_run(session: AsyncSession, campaign: str, run_key: str | None = None) -> CampaignRun:
    query = (select(CampaignRun).join(Campaign).where(Campaign.name == campaign)
             .order_by(CampaignRun.id.desc()).limit(1))
    if run_key is not None:
        query = query.where(CampaignRun.run_key == run_key)
    run = await session.scalar(query)
    if run is None:
        raise EcrmError(f"campaign '{campaign}' has no run{f' {run_key!r}' if run_key else ''}; launch it first")
    return run


async def run_report(sessions: async_sessionmaker[AsyncSession], campaign: str,
                     run_key: str | None = None, clock: Clock = SYSTEM_CLOCK) -> RunReport:
    async with sessions() as session:
        run = await find_run(session, campaign, run_key)
        source = await session.scalar(select(Campaign.source).where(Campaign.id == run.campaign_id))
        sends = await sends_of(session, SendSource.CAMPAIGN_RUN, run.id)
        counts = await count_deliveries(session, [send.id for send in sends])
        stopped = why_stopped(run, clock.now())
        in_flight = await count_in_flight(await session.connection(), [s.id for s in sends]) if stopped else 0
    return RunReport(campaign, run.run_key, "stopped" if stopped else run.status, counts, source or "", stopped,
                     in_flight)
