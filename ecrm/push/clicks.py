"""A click on a push notification: the service worker posts the delivery's click link
(`render.push.click_signer`), recorded as a `clicked` response with `channel: push`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery
from ecrm.feedback.models import Response
from ecrm.types import ResponseKind


async def record_click(session: AsyncSession, delivery_id: int, profile_id: int, now: datetime) -> bool:
    """False when the delivery is gone or is not this profile's (an erased profile): nothing to attribute."""
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or delivery.profile_id != profile_id:
        return False
    session.add(Response(delivery_id=delivery_id, profile_id=profile_id, kind=ResponseKind.CLICKED,
                         properties={"channel": delivery.channel}, occurred_at=now))
    return True
