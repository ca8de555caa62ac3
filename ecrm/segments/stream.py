"""Stream a compiled audience in batches of ids: one query, read through a server-side cursor
(`yield_per`), so the database evaluates the audience once and Python never holds more than
one batch of ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def stream_members(
    sessions: async_sessionmaker[AsyncSession], query: Select[int], batch_size: int
) -> AsyncIterator[list[int]]:
    async with sessions() as session:
        result = await session.stream_scalars(query.execution_options(yield_per=batch_size))
        async for ids in result.partitions(batch_size):
            yield list(ids)
