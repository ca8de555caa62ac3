"""Builders for push test data: a consent on a channel, a browser's subscription stored for a profile."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.peers.push_service import BrowserSubscription
from ecrm.profiles.models import Consent
from ecrm.push import vapid
from ecrm.push.models import PushSubscription
from tests.conftest import T0


async def grant(sessions: async_sessionmaker[AsyncSession], profile_id: int, channel: str,
                state: str = "granted") -> None:
    async with sessions.begin() as session:
        session.add(Consent(profile_id=profile_id, channel=channel, state=state, source="test", updated_at=T0))


async def subscribe(sessions: async_sessionmaker[AsyncSession], profile_id: int, sub: BrowserSubscription) -> int:
    """Stored as the API would (`push.subscriptions`), but the local service's endpoint is
    http://127.0.0.1, which the API refuses (browsers only give https endpoints)."""
    async with sessions.begin() as session:
        row = PushSubscription(profile_id=profile_id, endpoint=sub.endpoint, p256dh=sub.p256dh,
                               auth=vapid.b64url_encode(sub.auth), created_at=T0)
        session.add(row)
        await session.flush()
        return row.id
