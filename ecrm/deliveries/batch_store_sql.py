"""`BatchStore` on SQLAlchemy Core: any database SQLAlchemy speaks; used for SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.db import UtcDateTime, among, dialect_insert, session_factory, utcnow
from ecrm.deliveries.batch_store import ERASED, Span, Started, span
from ecrm.deliveries.batches import close_batch
from ecrm.deliveries.claims import Owner, mark_in_flight, still_owner, take_over
from ecrm.deliveries.models import DELIVERIES, RUN_BATCHES
from ecrm.deliveries.queued import read_queued
from ecrm.deliveries.store import Change, write_changes
from ecrm.profiles.models import Profile
from ecrm.types import DeliveryStatus

_QUEUED_COLUMNS = ["run_id", "batch", "profile_id", "channel", "variant", "status", "attempts", "queued_at"]


class SqlBatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = session_factory(engine)

    async def queue_members(self, run_id: int, batch: int, profile_ids: Sequence[int], channel: str) -> int:
        """One INSERT ... SELECT (rows are built in SQL); the (profile, run, channel) key skips
        anyone already in the run."""
        rows = select(literal(run_id), literal(batch), Profile.id, literal(channel), literal("default"),
                      literal("queued"), literal(0), literal(utcnow(), UtcDateTime()))
        async with self._sessions.begin() as session:
            rows = rows.where(among(session, Profile.id, profile_ids))
            stmt = dialect_insert(session, DELIVERIES).from_select(_QUEUED_COLUMNS, rows).on_conflict_do_nothing()
            queued = int(cast(CursorResult[Any], await session.execute(stmt)).rowcount or 0)
            if queued:
                await session.execute(insert(RUN_BATCHES).values(run_id=run_id, batch=batch, attempt=0))
        return queued

    async def start(self, run_id: int, batch: int, first_chunk: int) -> Started:
        async with self.engine.begin() as connection:
            owner = await take_over(connection, run_id, batch)
            recipients, erased = await read_queued(connection, run_id, batch)
            if erased:
                await write_changes(connection, [Change(i, DeliveryStatus.FAILED, error=ERASED) for i in erased],
                                    utcnow())
            await mark_in_flight(connection, owner, span(recipients[:first_chunk]))
        return Started(owner, recipients, len(erased))

    async def record(self, owner: Owner, changes: Sequence[Change], following: Span | None) -> bool:
        async with self.engine.begin() as connection:
            await write_changes(connection, changes, utcnow())
            return await still_owner(connection, owner, following)

    async def close(self, run_id: int, batch: int | None) -> bool:
        return await close_batch(self.engine, run_id, batch)

    async def warm(self) -> None:
        pass  # the engine belongs to the runtime

    async def aclose(self) -> None:
        pass

