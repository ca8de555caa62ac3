"""The browser's side of web push over HTTP, on SQLite and PostgreSQL: the scripts, subscribing
with a subscribe token instead of an API key, unsubscribing, and click reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.feedback.models import Response
from ecrm.feedback.unsubscribe import make_token as unsubscribe_token
from ecrm.peers.push_service import PushService
from ecrm.profiles.models import Consent, Profile
from ecrm.push import vapid
from ecrm.push.models import PushSubscription
from ecrm.push.subscribe_tokens import make_token
from ecrm.render.push import click_signer
from ecrm.settings import Settings
from tests.api.conftest import Client
from tests.factories import add_delivery, add_profile
from tests.webpush import with_push

KEYS = vapid.new_key_pair()
ENDPOINT = "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk-abc"


@pytest.fixture
def push_settings(settings: Settings) -> Settings:
    return with_push(settings, KEYS).model_copy(update={"public_url": "https://crm.shop.example/"})


@pytest.fixture
async def web(aiohttp_client: AiohttpClient, push_settings: Settings, clock: FrozenClock) -> Client:
    return await aiohttp_client(create_app(push_settings, clock))


def subscription() -> dict[str, Any]:
    data = PushService().subscribe().to_json()
    return {**data, "endpoint": ENDPOINT, "expirationTime": None}


def token(settings: Settings, clock: FrozenClock, external_id: str = "c-1", lifetime: int = 3600) -> str:
    return make_token(settings.secret_key, external_id, int(clock.now().timestamp()) + lifetime)


async def test_the_scripts_are_served_with_this_server_url_and_vapid_key(web: Client) -> None:
    sw = await web.get("/push/sw.js")
    assert sw.status == 200 and sw.content_type == "application/javascript"
    assert 'addEventListener("notificationclick"' in await sw.text()
    script = await web.get("/push/subscribe.js")
    text = await script.text()
    assert f'const KEY = "{KEYS.public_key}";' in text and 'const API = "https://crm.shop.example";' in text
    assert "__ECRM" not in text and script.headers["Access-Control-Allow-Origin"] == "*"


async def test_the_subscribe_script_says_when_push_is_not_set_up(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock
) -> None:
    client = await aiohttp_client(create_app(settings, clock))
    response = await client.get("/push/subscribe.js")
    assert response.status == 404 and "ecrm push keys" in (await response.json())["error"]


async def test_a_browser_subscribes_with_a_token_minted_for_its_customer_and_push_consent_is_granted(
    web: Client, push_settings: Settings, clock: FrozenClock, sessions: async_sessionmaker[AsyncSession],
    auth: dict[str, str]
) -> None:
    minted = await web.post("/v1/push/tokens", json={"external_id": "c-1"}, headers=auth)
    assert minted.status == 201
    body = {"token": (await minted.json())["token"], "subscription": subscription(), "user_agent": "Firefox"}

    first = await web.post("/push/subscriptions", json=body, headers={"Origin": "https://shop.example"})
    again = await web.post("/push/subscriptions", json=body)

    assert (first.status, again.status) == (201, 200)
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    async with sessions() as session:
        rows = (await session.execute(select(Profile.external_id, PushSubscription.endpoint).join(Profile))).all()
        consent = (await session.execute(select(Consent.channel, Consent.state, Consent.source))).all()
    assert [tuple(r) for r in rows] == [("c-1", ENDPOINT)]
    assert [tuple(c) for c in consent] == [("push", "granted", "push-subscribe")]


async def test_minting_a_token_needs_an_ingest_key(web: Client) -> None:
    assert (await web.post("/v1/push/tokens", json={"external_id": "c-1"})).status == 401


@pytest.mark.parametrize(("make", "message"), [
    (lambda s, c: "", "at least 1"),
    (lambda s, c: "garbage", "three parts"),
    (lambda s, c: token(s, c, "c-2").replace(token(s, c, "c-2").split(".")[0], "Yy0x"), "signature"),  # c-1
    (lambda s, c: token(s, c, lifetime=-1), "expired"),
    (lambda s, c: token(s, c, lifetime=30 * 86400), "longer than a week"),
    (lambda s, c: make_token("another-secret-0123456789", "c-1", int(c.now().timestamp()) + 60), "signature"),
])
async def test_a_bad_token_is_refused_naming_the_field_and_nothing_is_stored(
    web: Client, push_settings: Settings, clock: FrozenClock, sessions: async_sessionmaker[AsyncSession],
    make: Any, message: str
) -> None:
    response = await web.post("/push/subscriptions", json={"token": make(push_settings, clock),
                                                           "subscription": subscription()})
    data = await response.json()
    assert response.status in (403, 422) and message in str(data), data
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with sessions() as session:
        assert (await session.execute(select(PushSubscription.id))).all() == []


async def test_a_token_expires_with_time(web: Client, push_settings: Settings, clock: FrozenClock) -> None:
    minted = token(push_settings, clock, lifetime=60)
    clock.advance(timedelta(seconds=61))
    response = await web.post("/push/subscriptions", json={"token": minted, "subscription": subscription()})
    assert response.status == 403 and (await response.json())["field"] == "token"


@pytest.mark.parametrize("body", [
    b'{"token": "x", "subscription": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
    b'{"token": "\xff\xfe", "subscription": {}}',
    b'{"token": "' + b"x" * 5000 + b'", "subscription": {}}',
    b'{"token": "x", "subscription": {"endpoint": "https://a.example", "keys": {"p256dh": "AAAA", "auth": "x"}}}',
    b"[]",
    b"null",
])
async def test_hostile_bodies_get_a_4xx(web: Client, body: bytes) -> None:
    response = await web.post("/push/subscriptions", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status < 500 and response.headers["Access-Control-Allow-Origin"] == "*"


async def test_preflight_and_public_unsubscribe(
    web: Client, push_settings: Settings, clock: FrozenClock
) -> None:
    preflight = await web.options("/push/subscriptions", headers={"Origin": "https://shop.example",
                                                                  "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204 and "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    body = {"token": token(push_settings, clock), "subscription": subscription()}
    assert (await web.post("/push/subscriptions", json=body)).status == 201
    assert (await web.post("/push/unsubscribe", json={"endpoint": ENDPOINT})).status == 204
    gone = await web.post("/push/unsubscribe", json={"endpoint": ENDPOINT})
    assert gone.status == 404 and (await gone.json())["field"] == "endpoint"


async def test_a_click_is_recorded_against_its_delivery_and_forged_links_are_not(
    web: Client, push_settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    profile_id = await add_profile(sessions, external_id="c-1")
    async with sessions.begin() as session:
        delivery = await add_delivery(session, profile_id=profile_id)
    signer = click_signer(push_settings.secret_key)

    clicked = await web.post(f"/push/clicks/{signer.sign(delivery.id, profile_id)}")
    forged = await web.post(f"/push/clicks/{unsubscribe_token(push_settings.secret_key, delivery.id, profile_id)}")
    other = await web.post(f"/push/clicks/{signer.sign(delivery.id + 1, profile_id)}")
    junk = await web.post("/push/clicks/zz%00")

    assert (clicked.status, forged.status, other.status, junk.status) == (204, 404, 404, 404)
    async with sessions() as session:
        rows = (await session.execute(select(Response.kind, Response.delivery_id, Response.properties))).all()
    assert [tuple(r) for r in rows] == [("clicked", delivery.id, {"channel": "email"})]
