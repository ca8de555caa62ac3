"""Stream a compiled audience in batches of ids by keyset pagination: the database never
returns more than one batch at a time, and no list of the whole audience is held in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.profiles.models import Profile


async def stream_members(
    sessions: async_sessionmaker[AsyncSession], query: Select[int], batch_size: int
) -> AsyncIterator[list[int]]:
    after = 0
    while True:
        async with sessions() as session:
            ids = list((await session.scalars(query.where(Profile.id > after).limit(batch_size))).all())
        if not ids:
            return
        yield ids
        after = ids[-1]
