"""Entry and exit: keep `segment_members` equal to each named segment's rule, and record every
change as an event, `segment_entered` or `segment_exited`, with `{"segment": NAME}`.

Two ways in, one way to write:
- `refresh_touched`: the profiles an incoming event or order touched, every named segment
  evaluated for those profiles only (one query per segment), in one transaction;
- `refresh_segment`: a whole segment, for rules that time alone changes; one query streams the
  ids whose membership looks stale (matching and not a member, or a member no longer
  matching), a batch at a time, and never the whole segment.

Both end in `apply_changes`, which evaluates its profiles again under a lock on the segment (an
advisory lock on PostgreSQL, the database's write lock on SQLite), compares with the stored
rows and writes only the difference, events in the same transaction. Runs of the same segment
take turns, each sees what the one before committed, and a retry or a concurrent run finds
nothing left to change: no event is ever written twice. The events written here are not ingest,
so they start no refresh of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, String, delete, exists, func, insert, literal, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.db import Json, UtcDateTime, among, dialect_insert
from ecrm.profiles.models import Event, Profile
from ecrm.segments.library import NamedSegment
from ecrm.segments.members import rule_condition
from ecrm.segments.membership import probing
from ecrm.segments.models import SegmentMember
from ecrm.segments.stream import stream_members

SEGMENT_ENTERED = "segment_entered"
SEGMENT_EXITED = "segment_exited"
CHUNK = 1000  # profile ids per statement
LOCKS = 0x73656773  # "segs": the advisory lock namespace of segment refreshes


@dataclass(frozen=True)
class Changes:
    entered: int = 0
    exited: int = 0

    def __add__(self, other: Changes) -> Changes:
        return Changes(self.entered + other.entered, self.exited + other.exited)

    @property
    def total(self) -> int:
        return self.entered + self.exited


async def refresh_touched(sessions: async_sessionmaker[AsyncSession], segments: Sequence[NamedSegment],
                          profile_ids: Sequence[int], now: datetime) -> Changes:
    """Bring every segment up to date for `profile_ids`; one transaction per chunk of ids."""
    changes = Changes()
    ids = sorted(set(profile_ids))
    for start in range(0, len(ids), CHUNK):
        async with sessions.begin() as session:
            await begin_refresh(session)
            for segment in sorted(segments, key=lambda s: s.name):  # locks in one order: no deadlock
                changes += await apply_changes(session, segment, ids[start:start + CHUNK], now)
    return changes


async def refresh_segment(sessions: async_sessionmaker[AsyncSession], segment: NamedSegment,
                          now: datetime, batch_size: int = CHUNK) -> Changes:
    """Bring a whole segment up to date as of `now`, a batch of stale-looking ids at a time."""
    changes = Changes()
    async for ids in stream_members(sessions, stale_members(segment, now), batch_size):
        async with sessions.begin() as session:
            await begin_refresh(session)
            changes += await apply_changes(session, segment, sorted(ids), now)
    return changes


def stale_members(segment: NamedSegment, now: datetime) -> Select[int]:
    """Ids whose stored membership may differ from the rule: matching and not stored, or stored
    and no longer matching. The rule is evaluated once (a CTE)."""
    matching = select(Profile.id).where(rule_condition(segment.audience, now)).cte("matching")
    stored = SegmentMember
    entering = select(matching.c.id).where(~exists().where(stored.segment == segment.name,
                                                           stored.profile_id == matching.c.id))
    leaving = (select(stored.profile_id).outerjoin(matching, matching.c.id == stored.profile_id)
               .where(stored.segment == segment.name, matching.c.id.is_(None)))
    return select(union_all(entering, leaving).subquery().c[0])


async def apply_changes(session: AsyncSession, segment: NamedSegment, profile_ids: Sequence[int],
                        now: datetime) -> Changes:
    """Within the caller's transaction: evaluate `profile_ids` (at most a chunk) and write the
    difference from the stored membership, with its events."""
    await _lock_segment(session, segment.name)
    with probing():  # evaluated for these profiles only: per-profile index probes on SQLite too
        condition = rule_condition(segment.audience, now)
    matching = set(await session.scalars(select(Profile.id).where(among(session, Profile.id, profile_ids), condition)))
    stored = set(await session.scalars(select(SegmentMember.profile_id).where(
        SegmentMember.segment == segment.name, among(session, SegmentMember.profile_id, profile_ids))))
    entered = await _enter(session, segment.name, sorted(matching - stored), now)
    exited = await _exit(session, segment.name, sorted(stored - matching))
    await _record(session, segment.name, SEGMENT_ENTERED, entered, now)
    await _record(session, segment.name, SEGMENT_EXITED, exited, now)
    return Changes(len(entered), len(exited))


async def _enter(session: AsyncSession, name: str, profile_ids: list[int], now: datetime) -> list[int]:
    """One INSERT ... SELECT (a single array parameter on PostgreSQL); the ids really inserted."""
    if not profile_ids:
        return []
    rows = select(literal(name, String), Profile.id, literal(now, UtcDateTime)).where(
        among(session, Profile.id, profile_ids))
    stmt = (dialect_insert(session, SegmentMember).from_select(["segment", "profile_id", "entered_at"], rows)
            .on_conflict_do_nothing(index_elements=["segment", "profile_id"]).returning(SegmentMember.profile_id))
    return list((await session.scalars(stmt)).all())


async def _exit(session: AsyncSession, name: str, profile_ids: list[int]) -> list[int]:
    if not profile_ids:
        return []
    stmt = (delete(SegmentMember)
            .where(SegmentMember.segment == name, among(session, SegmentMember.profile_id, profile_ids))
            .returning(SegmentMember.profile_id))
    return list((await session.scalars(stmt, execution_options={"synchronize_session": False})).all())


async def _record(session: AsyncSession, segment: str, event: str, profile_ids: list[int], now: datetime) -> None:
    if not profile_ids:
        return
    rows = select(Profile.id, literal(event, String), literal({"segment": segment}, Json),
                  literal(now, UtcDateTime), literal(now, UtcDateTime)).where(among(session, Profile.id, profile_ids))
    columns = ["profile_id", "name", "properties", "occurred_at", "received_at"]
    await session.execute(insert(Event).from_select(columns, rows))


async def _lock_segment(session: AsyncSession, name: str) -> None:
    """One refresh of a segment at a time on PostgreSQL, until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(literal(LOCKS), func.hashtext(name))))


async def begin_refresh(session: AsyncSession) -> None:
    """What a refresh's transaction does first, per database.

    SQLite starts a transaction's write lock at its first write; a refresh that read first could
    find the database changed under it and fail. A write that changes nothing takes it first.

    PostgreSQL may run a prepared statement with a generic plan made while `segment_members` was
    small (a segment's first refresh grows it from nothing). A sequential scan that tests each
    row against the thousand ids of `= ANY(...)` then takes seconds per batch at 400,000
    members, until an ANALYZE invalidates the plan (never, with autovacuum off). Planning each
    statement for its own parameters costs well under a millisecond per batch.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(update(SegmentMember).where(text("0")).values(segment=SegmentMember.segment),
                              execution_options={"synchronize_session": False})
    else:
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
