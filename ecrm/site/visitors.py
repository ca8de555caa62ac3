"""Site visitors and their profiles: a new visitor id gets an anonymous profile
(`anon:<visitor id>`); when the visitor becomes known, their anonymous events move to the known
profile, the anonymous profile is erased and the visitor id points at the known profile from
then on. A visitor already known who identifies as someone else (a shared computer) is simply
pointed at the other profile: the first person's events stay theirs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import ensure_profile
from ecrm.profiles.models import Event, Profile
from ecrm.site.models import SiteVisitor

ANONYMOUS = "anon:"


async def visitor_profile(session: AsyncSession, visitor_id: str, now: datetime) -> int:
    """The id of the profile `visitor_id` stands for, created anonymous on first sight."""
    found = await _current(session, visitor_id)
    if found is not None:
        return found
    profile_id, _ = await ensure_profile(session, ANONYMOUS + visitor_id, now)
    stmt = dialect_insert(session, SiteVisitor).values(visitor_id=visitor_id, profile_id=profile_id,
                                                       created_at=now, updated_at=now)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["visitor_id"]))
    return await _current(session, visitor_id) or profile_id


async def _current(session: AsyncSession, visitor_id: str) -> int | None:
    return await session.scalar(select(SiteVisitor.profile_id).where(SiteVisitor.visitor_id == visitor_id))


async def become_known(session: AsyncSession, visitor_id: str, profile_id: int, now: datetime) -> None:
    """The visitor is `profile_id` from now on; their anonymous profile, if any, merges into it."""
    current = await visitor_profile(session, visitor_id, now)
    if current == profile_id:
        return
    await session.execute(update(SiteVisitor).where(SiteVisitor.visitor_id == visitor_id)
                          .values(profile_id=profile_id, updated_at=now))
    anonymous = await session.scalar(select(Profile.external_id).where(Profile.id == current))
    if anonymous == ANONYMOUS + visitor_id:
        await session.execute(update(Event).where(Event.profile_id == current).values(profile_id=profile_id))
        await erase_profile(session, current)
