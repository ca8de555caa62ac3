"""A fresh benchmark database with N profiles who agreed to one channel, inserted in chunks
and then ANALYZEd, as `ecrm profiles import` leaves them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.clock import SYSTEM_CLOCK
from ecrm.db import create_engine, migrate, refresh_statistics, session_factory
from ecrm.profiles.models import Consent, Profile

CHUNK = 5000
LOCALES = ("en", "fa", "th")
NAMES = {"en": "Emma", "fa": "سارا", "th": "สมชาย"}

# rows of its own for a chunk: (session, the chunk's profile ids, their numbers)
Extra = Callable[[AsyncSession, Sequence[int], range], Awaitable[None]]


async def seed_profiles(database_url: str, n: int, channel: str, profile: Callable[[int], dict[str, Any]],
                        extra: Extra | None = None, tables: tuple[str, ...] = ()) -> None:
    """Migrate a fresh database and insert profiles 0..n-1, `profile(i)`'s columns each, with a
    granted `channel` consent; `extra` adds rows per chunk in the same transaction, to `tables`."""
    engine = create_engine(database_url)
    await migrate(engine)
    sessions, now = session_factory(engine), SYSTEM_CLOCK.now()
    for start in range(0, n, CHUNK):
        numbers = range(start, min(n, start + CHUNK))
        rows = [{**profile(i), "time_zone": "UTC", "created_at": now, "updated_at": now} for i in numbers]
        async with sessions.begin() as session:
            ids = (await session.scalars(insert(Profile).returning(Profile.id), rows)).all()
            await session.execute(insert(Consent), [{"profile_id": pid, "channel": channel, "state": "granted",
                                                     "source": "bench", "updated_at": now} for pid in ids])
            if extra is not None:
                await extra(session, ids, numbers)
    await refresh_statistics(sessions, "profiles", "consents", *tables)
    await engine.dispose()
