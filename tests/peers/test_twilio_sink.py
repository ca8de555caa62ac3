"""The local Twilio peer answers as Twilio's Messages API does: auth, missing parameters, a body
that is not a form, and the standalone process's banner and tally."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ecrm.peers.twilio_sink import ACCOUNT_SID, AUTH_TOKEN, MESSAGES, TwilioSink
from tests.conftest import ROOT

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()}


@pytest.fixture
async def peer() -> AsyncIterator[tuple[TwilioSink, str]]:
    sink = TwilioSink()
    port = await sink.start()
    yield sink, f"http://127.0.0.1:{port}"
    await sink.close()


async def post(url: str, data: dict[str, str] | bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(("params", "code"), [({"From": "+15005550006", "Body": "hi"}, 21604),
                                              ({"To": "+14155550100", "Body": "hi"}, 21603),
                                              ({"To": "+14155550100", "From": "+15005550006"}, 21602)])
async def test_missing_parameters_get_twilios_error_json(peer: tuple[TwilioSink, str], params: dict[str, str],
                                                         code: int) -> None:
    status, body = await post(peer[1] + MESSAGES.format(sid=ACCOUNT_SID), params, AUTH)
    assert status == 400 and body["code"] == code and body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


async def test_wrong_credentials_or_another_account_are_20003(peer: tuple[TwilioSink, str]) -> None:
    params = {"To": "+14155550100", "From": "+15005550006", "Body": "hi"}
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:nope".encode()).decode()}
    assert (await post(peer[1] + MESSAGES.format(sid=ACCOUNT_SID), params, wrong))[1]["code"] == 20003
    other = peer[1] + MESSAGES.format(sid="AC" + "9" * 32)
    assert (await post(other, params, AUTH))[0] == 401
    assert peer[0].received == []


async def test_an_accepted_message_is_twilios_resource(peer: tuple[TwilioSink, str]) -> None:
    params = {"To": "+14155550100", "MessagingServiceSid": "MG" + "a" * 32, "Body": "سلام 👋"}
    status, body = await post(peer[1] + MESSAGES.format(sid=ACCOUNT_SID), params, AUTH)
    assert status == 201 and body["status"] == "accepted" and body["num_segments"] == "1"
    assert str(body["sid"]).startswith("SM") and len(str(body["sid"])) == 34 and body["to"] == "+14155550100"


async def test_a_body_that_is_not_a_utf8_form_is_400(peer: tuple[TwilioSink, str]) -> None:
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    assert (await post(peer[1] + MESSAGES.format(sid=ACCOUNT_SID), b"To=%FF&Body=\xfe", headers))[0] == 400


def test_the_standalone_peer_prints_its_port_and_writes_its_tally(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    process = subprocess.Popen([sys.executable, "-m", "ecrm.peers.twilio_sink", "--port", "0", "--stats-file",
                                str(stats)], stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None
    banner = process.stdout.readline().decode()
    assert banner.startswith("ecrm-twilio-sink listening on 127.0.0.1:")
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    process.stdout.close()
    assert json.loads(stats.read_text()) == {"accepted": 0, "refused": 0, "recipients": 0, "duplicates": 0,
                                             "per_recipient": {}}
