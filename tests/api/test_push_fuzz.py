"""Arbitrary subscriptions, mostly well-formed but for the fuzzed parts, thrown at
/v1/push/subscriptions: always an answer below 500, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ecrm.push import vapid
from tests.api.conftest import Client
from tests.api.test_fuzz import ANY_TEXT, ID, JSON, RUN

KEY_TEXT = ANY_TEXT | st.binary(max_size=70).map(vapid.b64url_encode) | st.sampled_from(
    ["BAAA", vapid.b64url_encode(b"\x04" + b"\x00" * 64), vapid.b64url_encode(b"0123456789abcdef"),
     vapid.new_key_pair().public_key])  # the last two valid, so that some reach the database
ENDPOINTS = ANY_TEXT.map(lambda tail: "https://push.example/" + tail) | ANY_TEXT | st.sampled_from(
    ["https://[::1", "https://", "https://push.example:99999/x", "https://a@/x"])
SUBSCRIPTIONS = st.fixed_dictionaries(
    {"external_id": ID,
     "subscription": st.fixed_dictionaries({"endpoint": ENDPOINTS},
                                           optional={"keys": st.fixed_dictionaries({"p256dh": KEY_TEXT,
                                                                                   "auth": KEY_TEXT}),
                                                     "expirationTime": JSON})},
    optional={"user_agent": ANY_TEXT})


async def _status(api: Client, method: str, body: Any, auth: dict[str, str]) -> int:
    resp = await api.request(method, "/v1/push/subscriptions", data=io.BytesIO(json.dumps(body).encode()),
                             headers={**auth, "Content-Type": "application/json"})
    assert resp.content_type in ("application/json", "application/octet-stream"), resp.content_type
    return resp.status


@RUN
@given(body=SUBSCRIPTIONS | JSON)
async def test_any_subscription_gets_an_answer_below_500(api: Client, auth: dict[str, str], body: Any) -> None:
    assert await _status(api, "POST", body, auth) < 500


@RUN
@given(body=st.fixed_dictionaries({"endpoint": ENDPOINTS}) | JSON)
async def test_any_unsubscription_gets_an_answer_below_500(api: Client, auth: dict[str, str], body: Any) -> None:
    assert await _status(api, "DELETE", body, auth) < 500
