"""Read-side of deliveries: find a run and count its deliveries by locale and status."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.models import Campaign, CampaignRun
from ecrm.deliveries.models import Delivery
from ecrm.errors import EcrmError
from ecrm.profiles.models import Profile


@dataclass
class RunReport:
    campaign: str
    run_key: str
    status: str
    by_locale: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[tuple[str, int]] = field(default_factory=list)

    def total(self, status: str | None = None) -> int:
        return sum(n for counts in self.by_locale.values() for s, n in counts.items() if status in (None, s))


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
                     run_key: str | None = None) -> RunReport:
    async with sessions() as session:
        run = await find_run(session, campaign, run_key)
        report = RunReport(campaign, run.run_key, run.status)
        counts = await session.execute(
            select(Profile.locale, Delivery.status, func.count()).join(Profile, Profile.id == Delivery.profile_id)
            .where(Delivery.run_id == run.id).group_by(Profile.locale, Delivery.status))
        table: dict[str, dict[str, int]] = defaultdict(dict)
        for locale, status, count in counts:
            table[locale][status] = count
        report.by_locale = dict(sorted(table.items()))
        errors = await session.execute(
            select(Delivery.error, func.count()).where(Delivery.run_id == run.id, Delivery.error.is_not(None))
            .group_by(Delivery.error).order_by(func.count().desc()).limit(5))
        report.errors = [(str(err), int(n)) for err, n in errors]
    return report
