"""When whole segments are refreshed (rules that time alone changes, e.g. `newer_than 2h`):
arq's cron on the workers, every `segment_refresh_minutes`; or, with no Redis, a loop in
`ecrm serve` on the app's clock (so a test moves the clock to make it run).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from arq import cron
from arq.cron import CronJob
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.segments.jobs import refresh_all, segments_refresh_job
from ecrm.settings import Settings

logger = logging.getLogger(__name__)
# A first refresh of large new segments can take minutes; each batch commits on its own, so a
# refresh cut short is carried on by the next tick.
REFRESH_TIMEOUT = 3600.0


def refresh_cron(minutes: int) -> CronJob:
    """Every `minutes` past the hour (0, 5, 10... for 5); one worker runs each tick (unique)."""
    return cron(segments_refresh_job, name="segments_refresh", minute=set(range(0, 60, minutes)), unique=True,
                run_at_startup=False, max_tries=1, timeout=REFRESH_TIMEOUT)


async def refresh_periodically(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                               clock: Clock) -> None:
    """Refresh every segment each `segment_refresh_minutes` on `clock`, until cancelled."""
    every = timedelta(minutes=settings.segment_refresh_minutes)
    due = clock.now() + every
    while True:
        await clock.sleep_until(due)
        due = clock.now() + every  # from start to start, as a cron: a long refresh does not push the next one
        try:
            await refresh_all(settings, sessions, clock.now())
        except Exception:
            logger.exception("scheduled segment refresh failed; trying again in %s", every)
