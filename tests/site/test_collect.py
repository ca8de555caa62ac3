"""POST /t/collect on both databases: what a consenting page sends becomes events of the
visitor's anonymous profile, merged into the known profile when the visitor is identified;
every refusal (origin, key, size, rate, a forged identify) stores nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.profiles.models import Event, Profile
from ecrm.settings import Settings
from ecrm.site.identity import identify_signature, make_click_token
from ecrm.site.models import SiteVisitor
from tests.factories import add_profile
from tests.site.conftest import IDENTIFY_SECRET, SHOP_ORIGIN, SITE_KEY, Client, site_settings_for

Sessions = async_sessionmaker[AsyncSession]
VISITOR = "0f3c9a4e8b7d6c5a4b3c2d1e0f9a8b7c"


def page(url: str = "https://shop.example/", title: str = "Home") -> dict[str, Any]:
    return {"type": "page", "url": url, "title": title, "referrer": None}


def product() -> dict[str, Any]:
    return {"type": "product", "url": "https://shop.example/p/hat",
            "product": {"id": "42", "sku": "HAT-1", "name": "Hat", "price": "19.99", "currency": "EUR"}}


async def collect(client: TestClient[Any, Any], *events: dict[str, Any], visitor: str = VISITOR,
                  origin: str | None = SHOP_ORIGIN, key: str = SITE_KEY) -> Any:
    headers = {"Content-Type": "text/plain;charset=UTF-8", **({"Origin": origin} if origin else {})}
    body = json.dumps({"k": key, "v": visitor, "events": list(events)})
    return await client.post("/t/collect", data=body, headers=headers)


async def events_by_owner(sessions: Sessions) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(select(Profile.external_id, Event.name).join(Event, Event.profile_id == Profile.id)
                                     .order_by(Event.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def count(sessions: Sessions, table: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_views_become_events_of_the_visitors_anonymous_profile(site_api: Client, sessions: Sessions) -> None:
    response = await collect(site_api, page(), product())
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    anonymous = f"anon:{VISITOR}"
    assert await events_by_owner(sessions) == [(anonymous, "page_viewed"), (anonymous, "product_viewed")]
    async with sessions() as session:
        properties = await session.scalar(select(Event.properties).where(Event.name == "product_viewed"))
    assert properties == {"url": "https://shop.example/p/hat", "id": "42", "sku": "HAT-1", "name": "Hat",
                          "price": "19.99", "currency": "EUR"}


async def test_identify_by_email_merges_the_visitor_into_the_known_profile(site_api: Client,
                                                                           sessions: Sessions) -> None:
    known = await add_profile(sessions, external_id="shopify:1", email="ann@example.com")
    await collect(site_api, page())
    await collect(site_api, {"type": "identify", "email": "Ann@Example.com"}, product())
    await collect(site_api, page("https://shop.example/cart", "Cart"))
    assert await events_by_owner(sessions) == [("shopify:1", "page_viewed"), ("shopify:1", "product_viewed"),
                                               ("shopify:1", "page_viewed")]
    assert await count(sessions, Profile) == 1  # the anonymous profile is gone
    async with sessions() as session:
        assert await session.scalar(select(SiteVisitor.profile_id)) == known


async def test_an_unknown_email_stays_on_the_anonymous_profile(site_api: Client, sessions: Sessions) -> None:
    await collect(site_api, page(), {"type": "identify", "email": "new@example.com"})
    async with sessions() as session:
        profile = (await session.scalars(select(Profile))).one()
    assert (profile.external_id, profile.email) == (f"anon:{VISITOR}", "new@example.com")


async def test_a_tracked_email_click_identifies_the_visitor(site_api: Client, sessions: Sessions,
                                                            site_settings: Settings) -> None:
    known = await add_profile(sessions, external_id="crm-7")
    token = make_click_token(site_settings.secret_key, known)
    await collect(site_api, page(), {"type": "identify", "click": token})
    assert await events_by_owner(sessions) == [("crm-7", "page_viewed")]
    forged = make_click_token("another-secret-0123456789", known)
    response = await collect(site_api, {"type": "identify", "click": forged}, visitor="a" * 32)
    assert (response.status, (await response.json())["field"]) == (403, "events.0.click")


async def test_identify_by_external_id_needs_the_shops_signature(site_api: Client, sessions: Sessions) -> None:
    unsigned = await collect(site_api, page(), {"type": "identify", "external_id": "crm-9"})
    wrong = await collect(site_api, page(), {"type": "identify", "external_id": "crm-9", "signature": "00" * 32})
    assert (unsigned.status, wrong.status) == (403, 403)
    assert (await wrong.json())["field"] == "events.1.signature"
    assert await count(sessions, Event) == await count(sessions, Profile) == 0  # the page view went back too
    signed = {"type": "identify", "external_id": "crm-9", "signature": identify_signature(IDENTIFY_SECRET, "crm-9")}
    assert (await collect(site_api, page(), signed)).status == 204
    assert await events_by_owner(sessions) == [("crm-9", "page_viewed")]


async def test_external_id_identify_is_refused_without_an_identify_secret(
        aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock, sessions: Sessions) -> None:
    client = await aiohttp_client(create_app(site_settings_for(settings, identify_secret=None), clock))
    response = await collect(client, {"type": "identify", "external_id": "crm-9", "signature": "x"})
    assert response.status == 403
    assert "site.identify_secret" in (await response.json())["error"]


async def test_a_known_visitor_identifying_as_someone_else_keeps_the_first_ones_events(
        site_api: Client, sessions: Sessions) -> None:
    await add_profile(sessions, external_id="a", email="a@example.com")
    await add_profile(sessions, external_id="b", email="b@example.com")
    await collect(site_api, {"type": "identify", "email": "a@example.com"}, page())
    await collect(site_api, {"type": "identify", "email": "b@example.com"}, page())
    await collect(site_api, {"type": "identify", "email": "nobody@example.com"})
    assert await events_by_owner(sessions) == [("a", "page_viewed"), ("b", "page_viewed")]
    async with sessions() as session:
        assert await session.scalar(select(Profile.email).where(Profile.external_id == "b")) == "b@example.com"


@pytest.mark.parametrize(("origin", "key"), [(None, SITE_KEY), ("https://evil.example", SITE_KEY),
                                             ("https://shop.example:8443", SITE_KEY), (SHOP_ORIGIN, "pk_wrong_key")])
async def test_other_origins_and_keys_are_403_and_store_nothing(site_api: Client, sessions: Sessions,
                                                                origin: str | None, key: str) -> None:
    response = await collect(site_api, page(), origin=origin, key=key)
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert await count(sessions, Profile) == 0


@pytest.mark.parametrize(("body", "status"), [
    (b'{"k": "pk_test_shop_0001", "v": "short", "events": [{"type": "page", "url": "/"}]}', 422),
    (b'{"k": "pk_test_shop_0001", "v": "0f3c9a4e8b7d6c5a4b3c2d1e0f9a8b7c", "events": []}', 422),
    (b'{"k": "pk_test_shop_0001", "v": "0f3c9a4e8b7d6c5a4b3c2d1e0f9a8b7c", "events": [{"type": "buy"}]}', 422),
    (b'{"k": ', 400), (b"\xc3\x28", 400), (b"[]", 422), (b'{"a":' * 40 + b"1" + b"}" * 40, 422),
    (b'{"k": "' + b"x" * 9000 + b'"}', 413),
])
async def test_malformed_or_oversized_bodies_are_4xx(site_api: Client, sessions: Sessions, body: bytes,
                                                     status: int) -> None:
    response = await site_api.post("/t/collect", data=body, headers={"Origin": SHOP_ORIGIN,
                                                                     "Content-Type": "text/plain"})
    assert response.status == status
    assert (await response.json())["error"]
    assert await count(sessions, Profile) == 0


async def test_too_many_events_in_one_request_is_422(site_api: Client, sessions: Sessions) -> None:
    response = await collect(site_api, *[page()] * 21)
    assert response.status == 422
    assert await count(sessions, Event) == 0


async def test_an_address_beyond_its_budget_gets_429(aiohttp_client: AiohttpClient, settings: Settings,
                                                     clock: FrozenClock, sessions: Sessions) -> None:
    client = await aiohttp_client(create_app(site_settings_for(settings, requests_per_minute=3), clock))
    statuses = [(await collect(client, page())).status for _ in range(5)]
    assert statuses == [204, 204, 204, 429, 429]
    assert await count(sessions, Event) == 3
    clock.advance(60)  # the next minute's budget
    assert (await collect(client, page())).status == 204


async def test_tracking_is_off_without_a_site_key(aiohttp_client: AiohttpClient, settings: Settings,
                                                  clock: FrozenClock) -> None:
    client = await aiohttp_client(create_app(settings, clock))
    response = await collect(client, page())
    assert response.status == 404
    assert "site.key" in (await response.json())["error"]


async def test_the_script_is_served_publicly(site_api: Client) -> None:
    response = await site_api.get("/t.js")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "ecrm_vid" in await response.text()
