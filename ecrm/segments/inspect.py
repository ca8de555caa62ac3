"""What `ecrm segment count | preview | explain` show of a segment's query: how many match,
the first few matching profiles, and the SQL itself (literals written in) with PostgreSQL's
plan for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.profiles.models import Profile

MAX_PREVIEW = 1000


@dataclass(frozen=True)
class PreviewRow:
    external_id: str
    email: str | None
    phone: str | None
    locale: str
    first_name: str | None
    traits: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"external_id": self.external_id, "email": self.email, "phone": self.phone, "locale": self.locale,
                "first_name": self.first_name, "traits": self.traits}


async def count_members(sessions: async_sessionmaker[AsyncSession], query: Select[int]) -> int:
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    async with sessions() as session:
        return int(await session.scalar(counted) or 0)


async def preview_members(sessions: async_sessionmaker[AsyncSession], query: Select[int],
                          limit: int) -> list[PreviewRow]:
    """The first `limit` matching profiles in id order."""
    first = query.limit(min(limit, MAX_PREVIEW)).subquery()
    stmt = (select(Profile.external_id, Profile.email, Profile.phone, Profile.locale, Profile.first_name,
                   Profile.traits).join(first, first.c.id == Profile.id).order_by(Profile.id))
    async with sessions() as session:
        return [PreviewRow(*row) for row in await session.execute(stmt)]


def sql_text(query: Select[int], dialect: Dialect) -> str:
    """The statement as the database gets it, with the values written in as SQL literals."""
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


async def explain_plan(sessions: async_sessionmaker[AsyncSession], query: Select[int],
                       analyze: bool = False) -> list[str] | None:
    """PostgreSQL's plan (`analyze`: run it and show times and buffers); None on SQLite."""
    async with sessions() as session:
        bind = session.get_bind()
        if bind.dialect.name != "postgresql":
            return None
        options = "(ANALYZE, BUFFERS)" if analyze else ""
        connection = await session.connection()
        rows = await connection.exec_driver_sql(f"EXPLAIN {options} {sql_text(query, bind.dialect)}")
        return [str(row[0]) for row in rows]
