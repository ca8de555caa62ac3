"""The refresh jobs arq runs (and the in-process queue, and `ecrm serve` without Redis):
`segments_touched` for the profiles ingest just touched, `segments_refresh` on a schedule for
rules that time alone changes. Each returns how many entries and exits it recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.runtime import JobContext
from ecrm.segments.catalog import catalog_for
from ecrm.segments.library import NamedSegment
from ecrm.segments.rankings import rank_age, ranked
from ecrm.segments.refresh import Changes, refresh_segment, refresh_touched
from ecrm.settings import Settings

logger = logging.getLogger(__name__)


async def segments_touched_job(ctx: JobContext, profile_ids: list[int]) -> int:
    runtime = ctx["runtime"]
    return await touched(runtime.settings, runtime.sessions, profile_ids, runtime.clock.now())


async def segments_refresh_job(ctx: dict[str, Any]) -> int:
    runtime = ctx["runtime"]
    return await refresh_all(runtime.settings, runtime.sessions, runtime.clock.now())


async def touched(settings: Settings, sessions: async_sessionmaker[AsyncSession], profile_ids: list[int],
                  now: datetime) -> int:
    segments = touchable(await catalog_for(settings.segments_dir, settings.money).segments())
    if not segments or not profile_ids:
        return 0
    changes = await refresh_touched(sessions, segments, profile_ids, now)
    _log("touched", len(profile_ids), changes)
    return changes.total


def touchable(segments: Sequence[NamedSegment]) -> list[NamedSegment]:
    """The segments an incoming event or order is evaluated against. Ranked ones (RFM) are left
    to the scheduled refresh: an order moves other profiles' quintiles as well, and ranking
    every buyer for one touched profile costs seconds."""
    return [segment for segment in segments if not segment.audience.ranks_everyone]


async def refresh_all(settings: Settings, sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Every named segment, one after another, as of `now`."""
    total = 0
    for segment in await catalog_for(settings.segments_dir, settings.money).segments():
        audience = await ranked(sessions, segment.audience, now, rank_age(settings))
        changes = await refresh_segment(sessions, replace(segment, audience=audience), now)
        _log(segment.name, None, changes)
        total += changes.total
    return total


def _log(what: str, profiles: int | None, changes: Changes) -> None:
    if changes.total:
        logger.info("segments %s%s: %d entered, %d exited", what,
                    f" ({profiles} profiles)" if profiles is not None else "", changes.entered, changes.exited)
