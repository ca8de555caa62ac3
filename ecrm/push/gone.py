"""Delete the subscriptions a push service said are gone (404/410: the browser unsubscribed or
the subscription expired), after the chunk that met them is recorded: they would fail again."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.messages import OutgoingPush
from ecrm.push.models import PushSubscription


async def delete_gone(sessions: async_sessionmaker[AsyncSession], messages: Sequence[OutgoingPush | None]) -> int:
    """Delete every subscription listed in a message's `gone`; return how many were."""
    ids = sorted({i for message in messages if message is not None for i in message.gone})
    if not ids:
        return 0
    async with sessions.begin() as session:
        result = await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(ids))
                                       .returning(PushSubscription.id))
        return len(result.all())
