"""Stage 1: per-channel consent, written as one race-safe upsert per batch.

A consent row says whether a profile may be contacted on a channel, who said so last and
when it last changed. Re-stating the current state changes nothing, so `updated_at` keeps
the moment the state was actually set (the date a regulator asks for). That moment is the `now`
the caller read from its clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.profiles.models import Consent
from ecrm.types import ChannelKind, ConsentState


@dataclass(frozen=True)
class ConsentChange:
    profile_id: int
    channel: ChannelKind
    state: ConsentState
    source: str
    at: datetime | None = None  # when it changed, if not the batch's `now`


async def set_consents(session: AsyncSession, changes: Sequence[ConsentChange], now: datetime,
                       compared: bool = False) -> None:
    """Upsert consent rows changed at `now` (or each change's own `at`); when one batch names a
    (profile, channel) twice, the last one wins. A row is rewritten only if its state differs,
    unless the caller already `compared` each change with the stored row under the profile's
    lock and sends only real changes (then a state set back and forth moves `updated_at`, as
    the same requests one after the other would)."""
    latest = {(c.profile_id, c.channel): c for c in changes}
    if not latest:
        return
    rows = [{"profile_id": c.profile_id, "channel": c.channel.value, "state": c.state.value,
             "source": c.source, "updated_at": c.at or now} for c in latest.values()]
    stmt = dialect_insert(session, Consent)
    stmt = stmt.on_conflict_do_update(
        index_elements=["profile_id", "channel"],
        set_={"state": stmt.excluded.state, "source": stmt.excluded.source, "updated_at": stmt.excluded.updated_at},
        where=None if compared else Consent.state != stmt.excluded.state,
    )
    await session.execute(stmt, rows)


async def load_consents(session: AsyncSession, profile_id: int) -> list[Consent]:
    stmt = select(Consent).where(Consent.profile_id == profile_id).order_by(Consent.channel)
    return list(await session.scalars(stmt, execution_options={"populate_existing": True}))
