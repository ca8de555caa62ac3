"""POST and DELETE /v1/push/subscriptions over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.models import Profile
from ecrm.push import vapid
from ecrm.push.models import PushSubscription
from tests.api.conftest import Client
from tests.conftest import T0
from tests.rows import count_rows

ENDPOINT = "https://fcm.googleapis.com/fcm/send/dXk2:APA91bH-abc"


def _keys() -> dict[str, str]:
    browser = ec.generate_private_key(vapid.CURVE)
    return {"p256dh": vapid.encode_public(browser.public_key()), "auth": vapid.b64url_encode(b"0123456789abcdef")}


KEYS = _keys()


def _body(external_id: str = "c-1", endpoint: str = ENDPOINT, **keys: Any) -> dict[str, Any]:
    return {"external_id": external_id,
            "subscription": {"endpoint": endpoint, "expirationTime": None, "keys": {**KEYS, **keys}},
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}


async def _post(api: Client, auth: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.post("/v1/push/subscriptions", json=body, headers=auth)
    return resp.status, await resp.json()


async def _stored(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, ...]]:
    async with sessions() as session:
        rows = await session.execute(select(Profile.external_id, PushSubscription.endpoint, PushSubscription.p256dh,
                                            PushSubscription.auth).join(Profile).order_by(PushSubscription.id))
        return [tuple(row) for row in rows.all()]


async def test_a_new_subscription_answers_201_and_creates_its_bare_profile(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    status, answer = await _post(api, auth, _body())
    assert (status, answer) == (201, {"external_id": "c-1", "endpoint": ENDPOINT,
                                      "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
                                      "created_at": T0.isoformat()})
    assert await _stored(sessions) == [("c-1", ENDPOINT, KEYS["p256dh"], KEYS["auth"])]
    async with sessions() as session:
        profile = (await session.scalars(select(Profile))).one()
    assert (profile.external_id, profile.email) == ("c-1", None)


async def test_the_same_endpoint_again_answers_200_and_goes_to_whoever_subscribed_last(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    await _post(api, auth, _body("c-1"))
    async with sessions.begin() as session:
        await session.execute(update(PushSubscription).values(invalid_at=T0))
    clock.advance(timedelta(hours=1))
    new_keys = _keys()
    status, answer = await _post(api, auth, _body("c-2", **new_keys))
    assert (status, answer["external_id"], answer["created_at"]) == (200, "c-2", T0.isoformat())
    assert await _stored(sessions) == [("c-2", ENDPOINT, new_keys["p256dh"], new_keys["auth"])]
    async with sessions() as session:
        assert (await session.scalars(select(PushSubscription.invalid_at))).all() == [None]
    assert await count_rows(sessions, Profile) == 2


async def test_a_profile_may_have_several_browsers(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    assert (await _post(api, auth, _body(endpoint=ENDPOINT)))[0] == 201
    assert (await _post(api, auth, _body(endpoint="https://updates.push.services.mozilla.com/wpush/v2/gAAA")))[0] == 201
    assert await count_rows(sessions, PushSubscription) == 2


async def test_delete_removes_the_subscription_and_then_answers_404(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await _post(api, auth, _body())
    resp = await api.delete("/v1/push/subscriptions", json={"endpoint": ENDPOINT}, headers=auth)
    assert (resp.status, await resp.read()) == (204, b"")
    assert await count_rows(sessions, PushSubscription) == 0
    assert await count_rows(sessions, Profile) == 1  # the profile stays
    again = await api.delete("/v1/push/subscriptions", json={"endpoint": ENDPOINT}, headers=auth)
    assert (again.status, (await again.json())["field"]) == (404, "endpoint")


async def test_an_api_key_is_required(api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    assert (await api.post("/v1/push/subscriptions", json=_body())).status == 401
    assert (await api.delete("/v1/push/subscriptions", json={"endpoint": ENDPOINT})).status == 401
    assert await count_rows(sessions, PushSubscription) == 0


NOT_ON_CURVE = vapid.b64url_encode(b"\x04" + b"\x01" * 64)
COMPRESSED = vapid.b64url_encode(b"\x02" + b"\x01" * 32)


@pytest.mark.parametrize(("body", "field", "says"), [
    (_body(endpoint="http://fcm.googleapis.com/fcm/send/x"), "subscription.endpoint", "https://"),
    (_body(endpoint="https://push.example/" + "a" * 2000), "subscription.endpoint", "2000"),
    (_body(endpoint="https:///no-host"), "subscription.endpoint", "https://"),
    (_body(endpoint="https://[::1/x"), "subscription.endpoint", "https://"),
    (_body(endpoint="https://push.example/é"), "subscription.endpoint", "ASCII"),
    (_body(endpoint="https://push.example/a b"), "subscription.endpoint", "ASCII"),
    (_body(p256dh=NOT_ON_CURVE), "subscription.keys.p256dh", "not a point on the P-256 curve"),
    (_body(p256dh=COMPRESSED), "subscription.keys.p256dh", "65-byte uncompressed"),
    (_body(p256dh="B+/="), "subscription.keys.p256dh", "base64url"),
    (_body(auth=vapid.b64url_encode(b"x" * 15)), "subscription.keys.auth", "16 bytes, not 15"),
    (_body(auth="!!"), "subscription.keys.auth", "base64url"),
    ({**_body(), "external_id": ""}, "external_id", ""),
    ({**_body(), "external_id": "a\x00b"}, "external_id", "NUL"),
    ({**_body(), "user_agent": "x" * 501}, "user_agent", "500"),
    ({**_body(), "extra": 1}, "extra", ""),
    ({"external_id": "c-1"}, "subscription", ""),
    ({"external_id": "c-1", "subscription": {"endpoint": ENDPOINT}}, "subscription.keys", ""),
])
async def test_bad_input_answers_422_naming_the_field(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession],
        body: dict[str, Any], field: str, says: str) -> None:
    status, answer = await _post(api, auth, body)
    assert status == 422, answer
    messages = {f["field"]: f["message"] for f in answer["fields"]}
    assert list(messages) == [field]
    assert says in messages[field]
    assert await count_rows(sessions, PushSubscription) == 0


async def test_a_bad_endpoint_on_delete_answers_422(api: Client, auth: dict[str, str]) -> None:
    resp = await api.delete("/v1/push/subscriptions", json={"endpoint": "ftp://x"}, headers=auth)
    assert (resp.status, [f["field"] for f in (await resp.json())["fields"]]) == (422, ["endpoint"])


async def test_hostile_bodies_get_a_clear_4xx(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    surrogate = '{"external_id": "c-1", "subscription": {"endpoint": "https://p.example/\\ud800", "keys": {}}}'
    json_headers = {**auth, "Content-Type": "application/json"}
    resp = await api.post("/v1/push/subscriptions", data=surrogate, headers=json_headers)
    assert (resp.status, (await resp.json())["field"]) == (422, "subscription.endpoint")
    deep = '{"external_id": "c-1", "subscription": ' + "[" * 5000 + "]" * 5000 + "}"
    resp = await api.post("/v1/push/subscriptions", data=deep, headers={**auth, "Content-Type": "application/json"})
    assert resp.status in (400, 422) and "nested deeper" in (await resp.json())["error"]
    for raw in (b"\xff\xfe", b"[]", b'"x"', b"null", b"{"):
        resp = await api.post("/v1/push/subscriptions", data=raw, headers={**auth, "Content-Type": "application/json"})
        assert resp.status in (400, 422), raw
        assert "error" in await resp.json()
    resp = await api.delete("/v1/push/subscriptions", data=b"{", headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 400
    assert await count_rows(sessions, PushSubscription) == 0


async def test_erasing_a_profile_removes_its_subscriptions_and_no_one_elses(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await _post(api, auth, _body("c-1", endpoint=ENDPOINT))
    await _post(api, auth, _body("c-2", endpoint="https://push.example/other"))
    async with sessions.begin() as session:
        profile_id = await session.scalar(select(Profile.id).where(Profile.external_id == "c-1"))
        assert profile_id is not None
        await erase_profile(session, profile_id)
    assert [row[:2] for row in await _stored(sessions)] == [("c-2", "https://push.example/other")]
