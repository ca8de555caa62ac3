"""Stage 1 bulk writes for the batch endpoints: many validated events (and the bare profiles
they name) stored in a few statements, not a transaction per item.

An event may carry the client's own `id`: it is stored once per profile (a unique index on
`events (profile_id, client_id)`), so a retried batch, or the same event twice in one batch,
adds nothing the second time. Profiles are upserted in bulk by `ingest.upsert_profile_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.profiles.ingest import EventIn, store_events


@dataclass(frozen=True)
class EventCounts:
    stored: int
    duplicates: int  # events whose client id the profile already had


async def record_events(session: AsyncSession, events: Sequence[EventIn], now: datetime) -> EventCounts:
    """Store `events` received at `now` in a few statements (`ingest.store_events`, the profiles
    they need too); an event whose client id its profile already has is skipped."""
    if not events:
        return EventCounts(0, 0)
    _, stored = await store_events(session, [(event, now) for event in events])
    return EventCounts(stored, len(events) - stored)
