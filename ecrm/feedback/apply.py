"""Stage 7: apply what people did back onto profiles and deliveries.

For now this is the unsubscribe link: withdraw email consent and record one `unsubscribed`
response per delivery, however often the link is posted (mail clients and scanners repeat).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery
from ecrm.feedback.models import Response
from ecrm.profiles.consent import ConsentChange, set_consents
from ecrm.profiles.models import Profile
from ecrm.types import ChannelKind, ConsentState, ResponseKind

logger = logging.getLogger(__name__)


async def apply_unsubscribe(session: AsyncSession, delivery_id: int | None, profile_id: int, source: str,
                            now: datetime) -> bool:
    """Withdraw the profile's email consent at `now`; True if this recorded a new `unsubscribed` response.

    A profile deleted since the message was sent has nothing left to withdraw (False); a
    deleted delivery still counts, unattributed.
    """
    if await session.get(Profile, profile_id) is None:
        return False
    # The consent upsert runs first: on PostgreSQL it locks the consent row, so two posts of
    # the same link serialise here and the second one sees the first one's response.
    await set_consents(session, [ConsentChange(profile_id, ChannelKind.EMAIL, ConsentState.WITHDRAWN, source)], now)
    if delivery_id is not None and await session.get(Delivery, delivery_id) is None:
        delivery_id = None
    if await _already_unsubscribed(session, delivery_id, profile_id):
        return False
    session.add(Response(delivery_id=delivery_id, profile_id=profile_id, kind=ResponseKind.UNSUBSCRIBED,
                         properties={"source": source}, occurred_at=now))
    await session.flush()
    logger.info("unsubscribed", extra={"delivery_id": delivery_id, "profile_id": profile_id})
    return True


async def _already_unsubscribed(session: AsyncSession, delivery_id: int | None, profile_id: int) -> bool:
    found = select(Response.id).where(Response.profile_id == profile_id,
                                      Response.kind == ResponseKind.UNSUBSCRIBED,
                                      Response.delivery_id.is_(None) if delivery_id is None
                                      else Response.delivery_id == delivery_id)
    return bool(await session.scalar(select(exists(found))))
