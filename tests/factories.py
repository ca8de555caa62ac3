"""Keyword-only builders for test data (profiles with consent, a send with a delivery), written
at the tests' T0."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.deliveries.models import Delivery, Send
from ecrm.profiles.models import Consent, Profile
from ecrm.types import ChannelKind, SendSource
from tests.conftest import T0

NAMES = {"en": "Emma", "fa": "سارا", "th": "สมชาย", "de": "Jonas"}


async def add_profile(sessions: async_sessionmaker[AsyncSession], *, external_id: str, locale: str = "en",
                      email: str | None = None, consent: str | None = "granted", now: datetime = T0,
                      **fields: Any) -> int:
    fields.setdefault("first_name", NAMES.get(locale, "Alex"))
    async with sessions.begin() as session:
        profile = Profile(external_id=external_id, email=email or f"{external_id}@example.com", locale=locale,
                          traits=fields.pop("traits", {}), created_at=now, updated_at=now, **fields)
        session.add(profile)
        await session.flush()
        if consent is not None:
            session.add(Consent(profile_id=profile.id, channel="email", state=consent, source="test", updated_at=now))
        return profile.id


async def add_profiles(sessions: async_sessionmaker[AsyncSession], count: int, locales: tuple[str, ...] = ("en",),
                       prefix: str = "p", now: datetime = T0) -> list[str]:
    async with sessions.begin() as session:
        profiles = [Profile(external_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com",
                            locale=locales[i % len(locales)], first_name=NAMES[locales[i % len(locales)]],
                            traits={"points": i}, created_at=now, updated_at=now) for i in range(count)]
        session.add_all(profiles)
        await session.flush()
        session.add_all(Consent(profile_id=p.id, channel="email", state="granted", source="test", updated_at=now)
                        for p in profiles)
    return [p.email or "" for p in profiles]


async def add_delivery(session: AsyncSession, *, profile_id: int, send_id: int | None = None) -> Delivery:
    """A queued email delivery to the profile, in a new transactional send unless `send_id` is given."""
    now = T0
    if send_id is None:
        send = Send(source_kind=SendSource.TRANSACTIONAL, source_id=profile_id, channel=ChannelKind.EMAIL,
                    template="welcome", label="welcome", created_at=now)
        session.add(send)
        await session.flush()
        send_id = send.id
    delivery = Delivery(send_id=send_id, batch=0, profile_id=profile_id, channel="email", queued_at=now)
    session.add(delivery)
    await session.flush()
    return delivery
