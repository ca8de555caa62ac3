"""What SMS tests share: a running local Twilio peer, settings that send to it, and profiles with
a phone number and SMS consent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN, TwilioSink
from ecrm.profiles.models import Consent, Profile
from ecrm.settings import Settings
from tests.conftest import T0
from tests.factories import NAMES

FROM = "+15005550006"
PUBLIC_URL = "https://crm.shop.example"


@pytest.fixture
async def twilio() -> AsyncIterator[tuple[TwilioSink, int]]:
    sink = TwilioSink()
    port = await sink.start()
    yield sink, port
    await sink.close()


def sms_settings(settings: Settings, port: int, **twilio: object) -> Settings:
    """`settings` sending SMS to the local peer on `port`, in small batches with no retry wait."""
    return settings.model_copy(update={
        "twilio": settings.twilio.model_copy(update={
            "account_sid": ACCOUNT_SID, "auth_token": SecretStr(AUTH_TOKEN), "from_number": FROM,
            "api_url": f"http://127.0.0.1:{port}", "connections": 4, **twilio}),
        "send": settings.send.model_copy(update={"batch_size": 4, "retry_delay": 0.0, "max_tries": 5}),
        "public_url": PUBLIC_URL,
    })


async def add_sms_profile(sessions: async_sessionmaker[AsyncSession], *, external_id: str, phone: str | None,
                          locale: str = "en", consent: str | None = "granted", points: int = 1500) -> int:
    async with sessions.begin() as session:
        profile = Profile(external_id=external_id, phone=phone, email=None, locale=locale,
                          first_name=NAMES.get(locale, "Alex"), traits={"points": points}, created_at=T0,
                          updated_at=T0)
        session.add(profile)
        await session.flush()
        if consent is not None:
            session.add(Consent(profile_id=profile.id, channel="sms", state=consent, source="test", updated_at=T0))
        return profile.id
