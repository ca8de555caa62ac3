"""The Twilio adapter against the local peer speaking Twilio's Messages API: the wire format it
posts, the answers it maps, and a Twilio that does not answer."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from ecrm.channels.sms.twilio import TwilioSms
from ecrm.errors import (
    AddressRejectedError,
    ConfigError,
    PermanentSendError,
    RecipientOptedOutError,
    TransientSendError,
)
from ecrm.messages import OutgoingSms
from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN, TwilioSink
from ecrm.settings import TwilioSettings, load_settings
from tests.conftest import ROOT
from tests.twilio import FROM, twilio

__all__ = ["twilio"]
SERVICE = "MG" + "a" * 32


def adapter(port: int, token: str = AUTH_TOKEN, **overrides: object) -> TwilioSms:
    fields = {"account_sid": ACCOUNT_SID, "from_number": FROM, "api_url": f"http://127.0.0.1:{port}",
              "timeout": 2.0, **overrides}
    return TwilioSms(TwilioSettings.model_validate(fields), token)


def sms(to: str = "+14155550100", body: str = "Hi Emma 👋") -> OutgoingSms:
    return OutgoingSms(to, body, 1, "https://crm.shop.example/webhooks/twilio/status?d=7")


@pytest.fixture
async def channel(twilio: tuple[TwilioSink, int]) -> AsyncIterator[TwilioSms]:
    sms_channel = adapter(twilio[1])
    yield sms_channel
    await sms_channel.close()


async def test_an_accepted_message_returns_twilios_sid_and_segments(
        twilio: tuple[TwilioSink, int], channel: TwilioSms) -> None:
    result = await channel.send(sms(body="€" * 80))  # 160 units: an extension character counts two
    sink = twilio[0]
    assert sink.received == [{"To": "+14155550100", "From": FROM, "Body": "€" * 80,
                              "StatusCallback": "https://crm.shop.example/webhooks/twilio/status?d=7",
                              "Sid": result.provider_message_id}]
    assert result.provider == "twilio" and result.provider_message_id.startswith("SM") and result.parts == 1
    assert (await channel.send(sms(body="€" * 81))).parts == 2


async def test_a_messaging_service_replaces_the_from_number(twilio: tuple[TwilioSink, int]) -> None:
    channel = adapter(twilio[1], from_number=None, messaging_service_sid=SERVICE)
    await channel.send(sms())
    await channel.close()
    assert twilio[0].received[0]["MessagingServiceSid"] == SERVICE and "From" not in twilio[0].received[0]


@pytest.mark.parametrize(("code", "error"), [(21211, AddressRejectedError), (21614, AddressRejectedError),
                                             (21610, RecipientOptedOutError), (21408, None)])
async def test_twilio_refusals_map_to_permanent_errors(twilio: tuple[TwilioSink, int], channel: TwilioSms,
                                                      code: int, error: type[Exception] | None) -> None:
    twilio[0].errors = {"+14155550100": code}
    with pytest.raises(PermanentSendError) as raised:
        await channel.send(sms())
    assert f"Twilio {code}" in str(raised.value)
    assert type(raised.value) is (error or PermanentSendError)
    if isinstance(raised.value, RecipientOptedOutError):
        assert raised.value.source == "twilio:21610"


@pytest.mark.parametrize(("code", "retry_after"), [(20429, 1.0), (20500, None), (20003, None)])
async def test_throttling_outages_and_auth_trouble_are_transient(
        twilio: tuple[TwilioSink, int], channel: TwilioSms, code: int, retry_after: float | None) -> None:
    twilio[0].fail_next, twilio[0].fail_code = 1, code
    with pytest.raises(TransientSendError) as raised:
        await channel.send(sms())
    assert raised.value.retry_after == retry_after and f"Twilio {code}" in str(raised.value)
    assert (await channel.send(sms())).provider_message_id  # the next one goes


async def test_a_wrong_auth_token_is_refused_by_the_peer_and_transient(twilio: tuple[TwilioSink, int]) -> None:
    channel = adapter(twilio[1], token="wrong")
    with pytest.raises(TransientSendError, match="Twilio 20003"):
        await channel.send(sms())
    await channel.close()
    assert twilio[0].received == []


async def test_basic_auth_carries_the_account_sid_and_token(channel: TwilioSms) -> None:
    scheme, encoded = channel.headers["Authorization"].split()
    assert scheme == "Basic" and base64.b64decode(encoded).decode() == f"{ACCOUNT_SID}:{AUTH_TOKEN}"


async def test_a_twilio_that_does_not_answer_or_is_down_is_transient() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # reads the request and never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = adapter(port, timeout=0.3)
    with pytest.raises(TransientSendError, match="did not answer"):
        await channel.send(sms())
    await channel.close()
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()
    down = adapter(port)
    with pytest.raises(TransientSendError, match="could not reach Twilio"):
        await down.send(sms())
    await down.close()


def test_settings_refuse_sending_without_a_token_or_a_sender() -> None:
    from ecrm.channels.sms.twilio import TwilioSms as Adapter

    base = load_settings(ROOT / "nonexistent.yaml", environ={})
    with pytest.raises(ConfigError, match="ECRM_TWILIO__AUTH_TOKEN"):
        Adapter.from_settings(base)
    tokened = base.model_copy(update={"twilio": base.twilio.model_copy(update={"auth_token": SecretStr("t")})})
    with pytest.raises(ConfigError, match="from_number"):
        Adapter.from_settings(tokened)
    env = load_settings(ROOT / "nonexistent.yaml", environ={"ECRM_TWILIO__AUTH_TOKEN": "secret-token",
                                                            "ECRM_TWILIO__FROM_NUMBER": FROM})
    assert "secret-token" not in repr(env)
    assert Adapter.from_settings(env).headers["Authorization"].startswith("Basic ")


def test_an_answer_that_took_the_message_without_naming_it_is_uncertain_never_resent() -> None:
    from ecrm.channels.sms.twilio import _outcome
    from ecrm.errors import UncertainSendError

    for payload in (b"{}", b"not json", b"[1]"):
        with pytest.raises(UncertainSendError):
            _outcome(201, payload, None, 1)
    with pytest.raises(TransientSendError) as raised:
        _outcome(503, b"<html>", "soon", 1)  # a Retry-After that is not seconds is not honoured
    assert raised.value.retry_after is None
