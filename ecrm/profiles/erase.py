"""Erase a profile and everything recorded about them (the right to erasure).

Consents, events, orders, push subscriptions and responses go with the profile through their
foreign keys. Deliveries and RFM ranks have none (the row-by-row check cost more than the
plan's insert, or than storing a ranking: `ecrm.deliveries.models`, `ecrm.segments.models`),
so they are deleted here, in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery
from ecrm.profiles.models import Profile
from ecrm.segments.models import RfmRank


async def erase_profile(session: AsyncSession, profile_id: int) -> None:
    await session.execute(delete(Delivery).where(Delivery.profile_id == profile_id))
    await session.execute(delete(RfmRank).where(RfmRank.profile_id == profile_id))
    await session.execute(delete(Profile).where(Profile.id == profile_id))
