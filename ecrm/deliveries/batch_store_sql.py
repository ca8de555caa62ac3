"""`BatchStore` on SQLAlchemy Core, for SQLite (PostgreSQL has `batch_store_pg`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, insert, literal, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.clock import Clock
from ecrm.db import UtcDateTime, among, dialect_insert, session_factory
from ecrm.deliveries.batch_store import ERASED, GONE, Span, Started, span
from ecrm.deliveries.batches import close_batch
from ecrm.deliveries.claims import Owner, mark_in_flight, still_owner, take_over
from ecrm.deliveries.models import DELIVERIES, SEND_BATCHES
from ecrm.deliveries.queued import read_queued
from ecrm.deliveries.sends import SendRef, load_send
from ecrm.deliveries.store import Change, write_changes
from ecrm.profiles.models import Profile
from ecrm.push.targets import read_targets
from ecrm.types import ChannelKind

_QUEUED_COLUMNS = ["send_id", "batch", "profile_id", "channel", "variant", "status", "attempts", "queued_at"]


class SqlBatchStore:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock
        self._sessions = session_factory(engine)

    async def send(self, send_id: int) -> SendRef:
        async with self._sessions() as session:
            try:
                return await load_send(session, send_id)
            except NoResultFound:
                raise LookupError(f"no send {send_id}") from None

    async def queue_members(self, send_id: int, batch: int, profile_ids: Sequence[int], channel: str) -> int:
        """One INSERT ... SELECT (rows are built in SQL); the (profile, send, channel) key skips
        anyone already in the send."""
        rows = select(literal(send_id), literal(batch), Profile.id, literal(channel), literal("default"),
                      literal("queued"), literal(0), literal(self.clock.now(), UtcDateTime()))
        async with self._sessions.begin() as session:
            rows = rows.where(among(session, Profile.id, profile_ids))
            stmt = dialect_insert(session, DELIVERIES).from_select(_QUEUED_COLUMNS, rows).on_conflict_do_nothing()
            queued = int(cast(CursorResult[Any], await session.execute(stmt)).rowcount or 0)
            if queued:
                await session.execute(insert(SEND_BATCHES).values(send_id=send_id, batch=batch, attempt=0))
        return queued

    async def start(self, send_id: int, batch: int, first_chunk: int, channel: str = "email") -> Started:
        async with self.engine.begin() as connection:
            owner = await take_over(connection, send_id, batch, self.clock.now())
            recipients, erased = await read_queued(connection, send_id, batch)
            if channel == ChannelKind.PUSH:
                await read_targets(connection, recipients)
            if erased:
                gone = [Change(i, *GONE, error=ERASED) for i in erased]
                await write_changes(connection, gone, self.clock.now())
            await mark_in_flight(connection, owner, span(recipients[:first_chunk]))
        return Started(owner, recipients, len(erased))

    async def record(self, owner: Owner, changes: Sequence[Change], following: Span | None) -> bool:
        async with self.engine.begin() as connection:
            await write_changes(connection, changes, self.clock.now())
            return await still_owner(connection, owner, following)

    async def close(self, send_id: int, batch: int | None) -> bool:
        return await close_batch(self.engine, send_id, batch, self.clock.now())

    async def warm(self) -> None:
        pass  # the engine belongs to the runtime

    async def aclose(self) -> None:
        pass
