"""YAML -> campaign -> Twilio's Messages API (the local peer), end to end, on SQLite and
PostgreSQL, sent through the same send path as email."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.campaigns.load import load_campaign
from ecrm.channels.sms.parts import count
from ecrm.deliveries.models import Delivery, EarlyReceipt
from ecrm.local import launch_in_process
from ecrm.peers.twilio_sink import TwilioSink
from ecrm.profiles.models import Consent, Profile
from ecrm.settings import Settings
from tests.smtp import free_port
from tests.twilio import FROM, PUBLIC_URL, add_sms_profile, sms_settings, twilio

__all__ = ["twilio"]  # the fixture
ROOT = Path(__file__).resolve().parents[2]
WELCOME_SMS = ROOT / "campaigns" / "welcome_sms.yaml"


async def deliveries_by_phone(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Delivery]:
    async with sessions() as session:
        rows = await session.execute(select(Profile.phone, Delivery).join(Profile, Profile.id == Delivery.profile_id))
        return {str(phone): delivery for phone, delivery in rows}


async def test_an_sms_campaign_posts_each_locales_text_and_stores_the_sids_and_parts(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], twilio: tuple[TwilioSink, int]
) -> None:
    sink, port = twilio
    settings = sms_settings(settings, port)
    phones = {"en": "+14155550101", "fa": "+989121234567", "th": "+66812345678"}
    for locale, phone in phones.items():
        await add_sms_profile(sessions, external_id=f"c-{locale}", phone=phone, locale=locale)
    await add_sms_profile(sessions, external_id="no-phone", phone=None)
    await add_sms_profile(sessions, external_id="no-consent", phone="+14155550102", consent=None)
    await add_sms_profile(sessions, external_id="withdrawn", phone="+14155550103", consent="withdrawn")

    await launch_in_process(settings, load_campaign(WELCOME_SMS, settings), str(WELCOME_SMS))

    received = {params["To"]: params for params in sink.received}
    assert set(received) == set(phones.values())
    deliveries = await deliveries_by_phone(sessions)
    for phone in phones.values():
        params, delivery = received[phone], deliveries[phone]
        assert set(params) == {"To", "From", "Body", "StatusCallback", "Sid"}
        assert params["From"] == FROM
        assert params["StatusCallback"] == f"{PUBLIC_URL}/webhooks/twilio/status?d={delivery.id}"
        assert delivery.status == "sent" and delivery.provider == "twilio" and delivery.channel == "sms"
        assert delivery.provider_message_id == params["Sid"]
        assert delivery.parts == count(params["Body"]).parts
    assert received[phones["en"]]["Body"].startswith("Example Shop: welcome, Emma! 1,500 welcome points")
    assert "سارا" in received[phones["fa"]]["Body"] and "۱٬۵۰۰" in received[phones["fa"]]["Body"]
    assert "สมชาย" in received[phones["th"]]["Body"]
    assert deliveries[phones["en"]].parts == 1 and deliveries[phones["fa"]].parts == 2  # UCS-2: 67 units a part


async def test_refused_numbers_are_marked_and_opt_outs_withdraw_consent_without_retrying(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], twilio: tuple[TwilioSink, int]
) -> None:
    sink, port = twilio
    settings = sms_settings(settings, port)
    ids = {code: await add_sms_profile(sessions, external_id=f"p{code}", phone=f"+1415555{code % 10000:04d}")
           for code in (21211, 21614, 21610)}
    ok = await add_sms_profile(sessions, external_id="ok", phone="+14155550100")
    sink.errors = {f"+1415555{code % 10000:04d}": code for code in ids}

    _, queue = await launch_in_process(settings, load_campaign(WELCOME_SMS, settings), str(WELCOME_SMS))

    assert queue.failed == []
    assert sink.refused == 3 and sink.accepted == 1  # each refusal was asked once: never retried
    async with sessions() as session:
        deliveries = {d.profile_id: d for d in await session.scalars(select(Delivery))}
        profiles = {p.id: p for p in await session.scalars(select(Profile))}
        consent = await session.scalar(select(Consent).where(Consent.profile_id == ids[21610],
                                                             Consent.channel == "sms"))
    assert deliveries[ok].status == "sent"
    for code, profile_id in ids.items():
        assert (deliveries[profile_id].status, deliveries[profile_id].reason) == ("failed", "permanent")
        assert f"Twilio {code}" in (deliveries[profile_id].error or "")
    for code in (21211, 21614):
        assert f"Twilio {code}" in (profiles[ids[code]].phone_invalid or "")
        assert profiles[ids[code]].phone_invalid_at is not None
    assert profiles[ids[21610]].phone_invalid is None and profiles[ok].phone_invalid is None
    assert consent is not None and (consent.state, consent.source) == ("withdrawn", "twilio:21610")


async def test_a_twilio_outage_is_retried_and_every_number_gets_exactly_one_message(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], twilio: tuple[TwilioSink, int]
) -> None:
    sink, port = twilio
    settings = sms_settings(settings, port)
    for n in range(10):
        await add_sms_profile(sessions, external_id=f"p{n}", phone=f"+1415555{n:04d}")
    sink.fail_next, sink.fail_code = 6, 20500

    _, queue = await launch_in_process(settings, load_campaign(WELCOME_SMS, settings), str(WELCOME_SMS))

    assert queue.failed == [] and sink.refused == 6
    assert sorted(sink.per_recipient.values()) == [1] * 10
    assert {d.status for d in (await deliveries_by_phone(sessions)).values()} == {"sent"}


async def test_twilios_signed_status_callbacks_reach_the_api_and_every_delivery_ends_delivered(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], twilio: tuple[TwilioSink, int]
) -> None:
    """The walking skeleton: YAML -> send -> Twilio peer -> signed callbacks, some of them racing
    the send's own record of the message -> `POST /webhooks/twilio/status` -> delivered."""
    sink, port = twilio
    sink.callbacks = True
    api_port = free_port()
    settings = sms_settings(settings, port).model_copy(update={"public_url": f"http://127.0.0.1:{api_port}"})
    runner = web.AppRunner(create_app(settings))  # checks signatures against this public_url and token
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    try:
        for n in range(12):
            await add_sms_profile(sessions, external_id=f"p{n}", phone=f"+1415555{n:04d}", locale=("en", "fa")[n % 2])
        await launch_in_process(settings, load_campaign(WELCOME_SMS, settings), str(WELCOME_SMS))
        for _ in range(200):  # the peer's callbacks trail the send
            statuses = {d.status for d in (await deliveries_by_phone(sessions)).values()}
            if not sink._pending and statuses == {"delivered"}:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    deliveries = await deliveries_by_phone(sessions)
    assert len(deliveries) == 12 and {d.status for d in deliveries.values()} == {"delivered"}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EarlyReceipt)) == 0
