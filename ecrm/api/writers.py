"""The server process's two group-commit writers (ecrm.api.group_commit): one for single events,
one for single profile upserts. Each flush is one transaction on the app's database. On
PostgreSQL, the single events, profile upserts and a batch route's events go on a raw asyncpg
pool (`ingest_pg`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.group_commit import GroupCommit
from ecrm.errors import ApiError
from ecrm.profiles import bulk
from ecrm.profiles.ingest import (
    EventIn,
    ProfileIn,
    StoredProfile,
    TraitsOverCap,
    record_events,
    upsert_profiles_in_order,
)
from ecrm.profiles.ingest_pg import PgIngest

ProfileWrite = tuple[ProfileIn, datetime]
EventWrite = tuple[EventIn, datetime]


def traits_refused(over: TraitsOverCap) -> ApiError:
    return ApiError(422, f"traits would take {over.size} bytes with this update, over the limit of {over.limit} "
                         "(api.max_traits_bytes); send fewer or smaller traits", field="traits")


@dataclass
class IngestWriters:
    sessions: async_sessionmaker[AsyncSession]
    max_traits_bytes: int
    pg: PgIngest | None = None  # PostgreSQL's asyncpg path; None: SQLAlchemy for everything

    def __post_init__(self) -> None:
        self.events: GroupCommit[EventWrite, tuple[int, int]] = GroupCommit(self._events)
        self.profiles: GroupCommit[ProfileWrite, StoredProfile] = GroupCommit(self._profiles,
                                                                             key=lambda write: write[0].external_id)

    async def close(self) -> None:
        await self.events.close()
        await self.profiles.close()
        if self.pg is not None:
            await self.pg.close()

    async def batch_events(self, events: Sequence[EventIn], now: datetime) -> bulk.EventCounts:
        """A batch route's events, in one transaction of their own."""
        if not events:
            return bulk.EventCounts(0, 0)
        if self.pg is not None:
            return await self.pg.record_events(events, now)
        async with self.sessions.begin() as session:
            return await bulk.record_events(session, events, now)

    async def _events(self, writes: Sequence[EventWrite]) -> list[tuple[int, int] | Exception]:
        if self.pg is not None:
            return list((await self.pg.store_events(writes))[0])
        async with self.sessions.begin() as session:
            return list(await record_events(session, writes))

    async def _profiles(self, writes: Sequence[ProfileWrite]) -> list[StoredProfile | Exception]:
        if self.pg is not None:
            outcomes = await self.pg.upsert_profiles_in_order(writes, self.max_traits_bytes)
        else:
            async with self.sessions.begin() as session:
                outcomes = await upsert_profiles_in_order(session, writes, self.max_traits_bytes)
        return [traits_refused(o) if isinstance(o, TraitsOverCap) else o for o in outcomes]
