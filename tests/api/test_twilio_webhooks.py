"""Twilio's webhooks, signed as Twilio signs them (HMAC-SHA1 of the URL and the sorted
parameters, with the auth token: https://www.twilio.com/docs/usage/webhooks/webhooks-security),
computed here independently of the library the API checks them with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import Mapping
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.deliveries import early_receipts, receipts
from ecrm.deliveries.early_receipts import kept_for, settle
from ecrm.deliveries.models import Delivery
from ecrm.profiles.models import Consent, Event
from ecrm.settings import Settings
from tests.conftest import T0
from tests.factories import add_delivery
from tests.twilio import add_sms_profile

TOKEN = "webhook-test-token"
PUBLIC = "https://crm.shop.example"
SID = "SM" + "ab" * 16
OTHER_SID = "SM" + "cd" * 16
Client = TestClient[web.Request, web.Application]


def sign(url: str, params: Mapping[str, str], token: str = TOKEN) -> str:
    data = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock) -> Client:
    settings = settings.model_copy(update={
        "public_url": PUBLIC, "twilio": settings.twilio.model_copy(update={"auth_token": SecretStr(TOKEN)})})
    return await aiohttp_client(create_app(settings, clock))


async def post(api: Client, path: str, params: dict[str, str], signature: str | None = "sign") -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "sign":
        signature = sign(PUBLIC + path, params)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    response = await api.post(path, data=urlencode(params), headers=headers)
    return response.status, await response.text()


def status_params(status: str, sid: str = SID, **extra: str) -> dict[str, str]:
    return {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "From": "+15005550006", "MessageSid": sid,
            "MessageStatus": status, "SmsSid": sid, "SmsStatus": status, "To": "+14155550100", **extra}


async def sms_delivery(sessions: async_sessionmaker[AsyncSession], sid: str | None = SID,
                       phone: str = "+14155550100") -> int:
    profile_id = await add_sms_profile(sessions, external_id=f"x{phone}{sid}", phone=phone)
    async with sessions.begin() as session:
        delivery = await add_delivery(session, profile_id=profile_id)
        if sid is not None:
            await session.execute(update(Delivery).where(Delivery.id == delivery.id).values(
                channel="sms", status="sent", provider="twilio", provider_message_id=sid, sent_at=T0))
        return delivery.id


async def delivery(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> Delivery:
    async with sessions() as session:
        return (await session.execute(select(Delivery).where(Delivery.id == delivery_id))).scalar_one()


async def test_status_callbacks_move_a_delivery_forward_only_and_idempotently(
        api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await sms_delivery(sessions)
    path = f"/webhooks/twilio/status?d={delivery_id}"
    for status in ("queued", "sent", "delivered", "sent", "delivered", "undelivered"):
        assert (await post(api, path, status_params(status)))[0] == 204
    row = await delivery(sessions, delivery_id)
    assert row.status == "delivered" and row.delivered_at is not None


@pytest.mark.parametrize(("status", "code", "state"), [("undelivered", "30003", ("bounced", "soft")),
                                                       ("undelivered", "30005", ("bounced", "hard")),
                                                       ("failed", "30008", ("failed", "permanent"))])
async def test_undelivered_and_failed_keep_twilios_error_code(
        api: Client, sessions: async_sessionmaker[AsyncSession], status: str, code: str,
        state: tuple[str, str]) -> None:
    delivery_id = await sms_delivery(sessions)
    assert (await post(api, f"/webhooks/twilio/status?d={delivery_id}",
                       status_params(status, ErrorCode=code)))[0] == 204
    row = await delivery(sessions, delivery_id)
    assert (row.status, row.reason) == state and row.error == f"Twilio {status}, error {code}"


async def test_a_missing_wrong_or_replayed_elsewhere_signature_is_refused_and_changes_nothing(
        api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await sms_delivery(sessions)
    other_id = await sms_delivery(sessions, OTHER_SID, "+14155550199")
    path, params = f"/webhooks/twilio/status?d={delivery_id}", status_params("delivered")
    assert (await post(api, path, params, signature=None))[0] == 403
    assert (await post(api, path, params, signature=sign(PUBLIC + path, params, "another-token")))[0] == 403
    assert (await post(api, path, params, signature=sign(PUBLIC + path, {**params, "MessageStatus": "sent"})))[0] == 403
    moved = f"/webhooks/twilio/status?d={other_id}"  # a signed callback pointed at another delivery
    assert (await post(api, moved, params, signature=sign(PUBLIC + path, params)))[0] == 403
    assert (await delivery(sessions, delivery_id)).status == "sent"
    assert (await delivery(sessions, other_id)).status == "sent"


async def test_a_callback_for_another_message_of_the_delivery_changes_nothing(
        api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await sms_delivery(sessions)
    assert (await post(api, f"/webhooks/twilio/status?d={delivery_id}", status_params("failed", OTHER_SID)))[0] == 204
    assert (await delivery(sessions, delivery_id)).status == "sent"
    async with sessions() as session:
        assert await kept_for(session, delivery_id) == []


async def test_a_callback_before_the_sid_is_stored_is_kept_and_applied_once_it_is(
        api: Client, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    delivery_id = await sms_delivery(sessions, sid=None)
    path = f"/webhooks/twilio/status?d={delivery_id}"
    assert (await post(api, path, status_params("delivered")))[0] == 204
    assert (await post(api, path, status_params("sent")))[0] == 204
    async with sessions() as session:
        assert [k.status for k in await kept_for(session, delivery_id)] == ["delivered", "sent"]
    assert (await delivery(sessions, delivery_id)).status == "queued"
    async with sessions.begin() as session:  # what the send's record does
        await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
            status="sent", provider="twilio", provider_message_id=SID, sent_at=T0))
    assert await settle(sessions, delivery_id, delivery_id, clock.now()) == 2
    assert (await delivery(sessions, delivery_id)).status == "delivered"
    async with sessions() as session:
        assert await kept_for(session, delivery_id) == []
    assert await settle(sessions, delivery_id, delivery_id, clock.now()) == 0


def inbound_params(body: str, phone: str = "+14155550100") -> dict[str, str]:
    return {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "Body": body, "From": phone,
            "MessageSid": OTHER_SID, "NumMedia": "0", "NumSegments": "1", "SmsMessageSid": OTHER_SID,
            "SmsSid": OTHER_SID, "SmsStatus": "received", "To": "+15005550006"}


async def sms_consent(sessions: async_sessionmaker[AsyncSession], profile_id: int) -> tuple[str, str]:
    async with sessions() as session:
        consent = await session.scalar(select(Consent).where(Consent.profile_id == profile_id,
                                                             Consent.channel == "sms"))
        assert consent is not None
        return consent.state, consent.source


@pytest.mark.parametrize("word", ["STOP", " stop ", "StopAll", "unsubscribe", "CANCEL", "end", "quit", "Revoke",
                                  "OPTOUT"])
async def test_opt_out_keywords_withdraw_sms_consent(api: Client, sessions: async_sessionmaker[AsyncSession],
                                                     word: str) -> None:
    profile_id = await add_sms_profile(sessions, external_id="p", phone="+14155550100")
    status, text = await post(api, "/webhooks/twilio/inbound", inbound_params(word))
    assert status == 200 and text.endswith("<Response></Response>")
    assert await sms_consent(sessions, profile_id) == ("withdrawn", f"twilio:{word.strip().upper()}")


@pytest.mark.parametrize("word", ["START", " yes", "unstop "])
async def test_opt_in_keywords_grant_sms_consent(api: Client, sessions: async_sessionmaker[AsyncSession],
                                                 word: str) -> None:
    profile_id = await add_sms_profile(sessions, external_id="p", phone="+14155550100", consent="withdrawn")
    assert (await post(api, "/webhooks/twilio/inbound", inbound_params(word)))[0] == 200
    assert (await sms_consent(sessions, profile_id))[0] == "granted"


async def test_help_is_answered_with_the_help_text_as_twiml(api: Client, settings: Settings) -> None:
    response = await api.post("/webhooks/twilio/inbound", data=urlencode(inbound_params(" help")), headers={
        "X-Twilio-Signature": sign(PUBLIC + "/webhooks/twilio/inbound", inbound_params(" help")),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200 and response.content_type == "text/xml"
    assert await response.text() == ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
                                     f"{settings.twilio.help_text}</Message></Response>")


async def test_any_other_text_is_an_sms_reply_linked_to_the_last_sms_sent_to_that_number(
        api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await sms_delivery(sessions)
    async with sessions() as session:
        profile_id = (await delivery(sessions, delivery_id)).profile_id
    assert (await post(api, "/webhooks/twilio/inbound", inbound_params("Is the sale on <Sunday> too? 🙂")))[0] == 200
    assert (await post(api, "/webhooks/twilio/inbound", inbound_params("hello", "+19999999999")))[0] == 200
    async with sessions() as session:
        events = list(await session.scalars(select(Event)))
    assert [(e.profile_id, e.name) for e in events] == [(profile_id, "sms_reply")]
    assert events[0].properties == {"body": "Is the sale on <Sunday> too? 🙂", "message_sid": OTHER_SID,
                                    "delivery_id": delivery_id}
    assert (await sms_consent(sessions, profile_id))[0] == "granted"


@pytest.mark.parametrize(("body", "field"), [
    (b"MessageSid=\xff\xfe&MessageStatus=sent", None),  # not UTF-8
    (b"MessageSid=%FF%FE&MessageStatus=sent", None),  # percent-encoded bytes that are not UTF-8
    (b"&".join(b"f%d=1" % n for n in range(500)), None),  # more fields than Twilio ever sends
])
async def test_bodies_that_are_not_twilio_forms_are_400(api: Client, body: bytes, field: str | None) -> None:
    response = await api.post("/webhooks/twilio/status?d=1", data=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400 and "form" in (await response.json())["error"]


async def test_a_huge_body_is_413(api: Client) -> None:
    response = await api.post("/webhooks/twilio/inbound", data=io.BytesIO(b"Body=" + b"a" * 2_000_000),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 413


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/webhooks/twilio/status", status_params("delivered"), "d"),
    ("/webhooks/twilio/status?d=abc", status_params("delivered"), "d"),
    ("/webhooks/twilio/status?d=99999999999999999999999", status_params("delivered"), "d"),
    ("/webhooks/twilio/status?d=%D9%A3", status_params("delivered"), "d"),  # an Arabic-Indic digit
    ("/webhooks/twilio/status?d=1", status_params("delivered", "SM1"), "MessageSid"),
    ("/webhooks/twilio/status?d=1", status_params("x" * 5000), "MessageStatus"),
    ("/webhooks/twilio/status?d=1", status_params("failed", ErrorCode="9" * 50), "ErrorCode"),
    ("/webhooks/twilio/inbound", inbound_params("a" * 1601), "Body"),
    ("/webhooks/twilio/inbound", inbound_params("STOP\x00"), "Body"),
    ("/webhooks/twilio/inbound", inbound_params("hi", "+1" * 100), "From"),
])
async def test_signed_but_malformed_fields_are_400_naming_the_field(api: Client, path: str, params: dict[str, str],
                                                                    field: str) -> None:
    status, text = await post(api, path, params)
    assert status == 400 and f'"field": "{field}"' in text


async def test_a_callback_for_a_delivery_left_unknown_settles_it_as_that_message(
        api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    delivery_id = await sms_delivery(sessions, sid=None)
    async with sessions.begin() as session:  # a sender killed while handing it over
        await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
            channel="sms", status="unknown", reason="interrupted"))
    assert (await post(api, f"/webhooks/twilio/status?d={delivery_id}", status_params("delivered")))[0] == 204
    row = await delivery(sessions, delivery_id)
    assert (row.status, row.reason, row.provider_message_id) == ("delivered", None, SID)
    assert (await post(api, f"/webhooks/twilio/status?d={delivery_id}", status_params("failed", OTHER_SID)))[0] == 204
    assert (await delivery(sessions, delivery_id)).status == "delivered"


async def test_a_callback_racing_the_sends_commit_of_the_sid_is_applied_not_taken_for_a_repeat(
        api: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The send commits the SID after the callback's update missed it and before the callback
    reads the row (PostgreSQL's read committed): the receipt must still apply."""
    if settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: the callback's transaction cannot see a commit in between")
    delivery_id = await sms_delivery(sessions, sid=None)
    real_apply = receipts.apply_in
    calls = 0

    async def apply_then_the_send_commits(*args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        applied = await real_apply(*args, **kwargs)  # type: ignore[arg-type]
        if calls == 1:
            async with sessions.begin() as session:  # the send's record, on its own connection
                await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
                    channel="sms", status="sent", provider="twilio", provider_message_id=SID, sent_at=T0))
        return applied

    monkeypatch.setattr(early_receipts, "apply_in", apply_then_the_send_commits)
    assert (await post(api, f"/webhooks/twilio/status?d={delivery_id}", status_params("delivered")))[0] == 204
    assert (await delivery(sessions, delivery_id)).status == "delivered"
    async with sessions() as session:
        assert await kept_for(session, delivery_id) == []
