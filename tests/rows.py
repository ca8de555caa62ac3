"""Counting rows, for tests that check what a request stored (or did not)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.db import Base


async def count_rows(sessions: async_sessionmaker[AsyncSession], entity: type[Base]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(entity)) or 0
