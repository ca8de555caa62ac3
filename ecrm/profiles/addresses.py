"""Stage 1: what a provider said about a profile's address, written on the profile.

A phone number a provider refuses for good (not a valid number, not a mobile) is marked
`phone_invalid` with the provider's words and the time: audiences skip it from then on
(`segments.reach`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.profiles.models import Profile

REASON_LENGTH = 200  # the column's width
PROFILES = cast(Table, Profile.__table__)
_MARK = (update(PROFILES).where(PROFILES.c.id == bindparam("p_id"), PROFILES.c.phone_invalid.is_(None))
         .values(phone_invalid=bindparam("p_reason"), phone_invalid_at=bindparam("p_now")))


async def mark_phones_invalid(session: AsyncSession, reasons: Mapping[int, str], now: datetime) -> None:
    """Mark each profile's phone invalid with its reason; a profile already marked keeps its
    first reason and time (the number has not changed since)."""
    rows = [{"p_id": profile_id, "p_reason": reason[:REASON_LENGTH], "p_now": now}
            for profile_id, reason in reasons.items()]
    if rows:
        await session.execute(_MARK, rows)
