"""Who can be reached on each channel: an address not known to be bad, and consent granted."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.profiles.models import Consent, Profile
from ecrm.push.models import PushSubscription
from ecrm.segments.reach import has_address, reachable
from ecrm.types import ChannelKind
from tests.conftest import T0
from tests.factories import add_profile


async def _grant(sessions: async_sessionmaker[AsyncSession], profile_id: int, channel: str, state: str) -> None:
    async with sessions.begin() as session:
        session.add(Consent(profile_id=profile_id, channel=channel, state=state, source="test", updated_at=T0))


async def _subscribe(sessions: async_sessionmaker[AsyncSession], profile_id: int, name: str, invalid: bool) -> None:
    async with sessions.begin() as session:
        session.add(PushSubscription(profile_id=profile_id, endpoint=f"https://push.example/{name}", p256dh="k",
                                     auth="a", created_at=T0, invalid_at=T0 if invalid else None))


async def _who(sessions: async_sessionmaker[AsyncSession], condition: object) -> set[str]:
    async with sessions() as session:
        return set((await session.scalars(select(Profile.external_id).where(condition))).all())  # type: ignore[arg-type]


async def test_each_channel_needs_a_good_address_and_its_own_consent(
    sessions: async_sessionmaker[AsyncSession]
) -> None:
    phone = await add_profile(sessions, external_id="phone", phone="+15005550006")
    await _grant(sessions, phone, "sms", "granted")
    bad_phone = await add_profile(sessions, external_id="bad-phone", phone="+15005550001", phone_invalid="21211")
    await _grant(sessions, bad_phone, "sms", "granted")
    withdrawn = await add_profile(sessions, external_id="sms-withdrawn", phone="+15005550007")
    await _grant(sessions, withdrawn, "sms", "withdrawn")
    pushed = await add_profile(sessions, external_id="push", consent=None)
    await _subscribe(sessions, pushed, "good", invalid=False)
    await _grant(sessions, pushed, "push", "granted")
    stale = await add_profile(sessions, external_id="stale-push", consent=None)
    await _subscribe(sessions, stale, "gone", invalid=True)
    await _grant(sessions, stale, "push", "granted")

    assert await _who(sessions, has_address(ChannelKind.SMS)) == {"phone", "sms-withdrawn"}
    assert await _who(sessions, reachable(ChannelKind.SMS)) == {"phone"}
    assert await _who(sessions, has_address(ChannelKind.PUSH)) == {"push"}
    assert await _who(sessions, reachable(ChannelKind.PUSH)) == {"push"}
    # add_profile gives every profile an email address; consent was granted only where not None
    assert await _who(sessions, reachable(ChannelKind.EMAIL)) == {"phone", "bad-phone", "sms-withdrawn"}
