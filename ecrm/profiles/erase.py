"""Erase a profile and everything recorded about them (the right to erasure).

Consents, events, orders, push subscriptions and responses go with the profile through their
foreign keys. Deliveries have none (its row-by-row check cost more than the plan's insert, see
`ecrm.deliveries.models`), so they are deleted here, in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery
from ecrm.profiles.models import Profile


async def erase_profile(session: AsyncSession, profile_id: int) -> None:
    await session.execute(delete(Delivery).where(Delivery.profile_id == profile_id))
    await session.execute(delete(Profile).where(Profile.id == profile_id))
