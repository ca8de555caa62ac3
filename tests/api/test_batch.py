"""The batch endpoints over HTTP, on SQLite and PostgreSQL: per-item errors, retries that store
nothing twice, hostile bodies."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

from pytest_aiohttp import AiohttpClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.orders.models import Order
from ecrm.profiles.models import Event, Profile
from ecrm.settings import Settings
from tests.api.conftest import Client
from tests.rows import count_rows

ORDER: dict[str, Any] = {"order_id": "#1", "external_id": "c-1", "status": "placed", "total": "19.99",
                         "currency": "THB"}


JSON = {"Content-Type": "application/json"}


async def _batch(api: Client, auth: dict[str, str], kind: str, items: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.post(f"/v1/{kind}:batch", json={"items": items}, headers=auth)
    return resp.status, await resp.json()


async def test_good_profiles_are_stored_and_bad_ones_listed_by_index_and_field(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    items = [{"external_id": "c-1", "email": "A@Example.com"}, {"external_id": "c-2", "email": "not an address"},
             {"external_id": "c-3", "locale": "xx-nowhere", "color": 1}, {"external_id": "c-4"}]
    status, answer = await _batch(api, auth, "profiles", items)
    assert status == 200
    assert (answer["received"], answer["stored"], answer["created"]) == (4, 2, 2)
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(1, "email"), (2, "locale"), (2, "color")]
    async with sessions() as session:
        assert set(await session.scalars(select(Profile.external_id))) == {"c-1", "c-4"}
        assert await session.scalar(select(Profile.email).where(Profile.external_id == "c-1")) == "a@example.com"


async def test_a_retried_profile_batch_updates_the_same_profiles(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    items = [{"external_id": f"c-{i}", "traits": {"n": i}} for i in range(50)]
    assert (await _batch(api, auth, "profiles", items))[1]["created"] == 50
    status, answer = await _batch(api, auth, "profiles", items)
    assert (status, answer["created"], answer["updated"]) == (200, 0, 50)
    assert await count_rows(sessions, Profile) == 50


async def test_events_with_a_client_id_are_stored_once_across_retries_and_within_a_batch(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    items = [{"external_id": "c-1", "name": "page_viewed", "id": "e-1"},
             {"external_id": "c-1", "name": "page_viewed", "id": "e-1"},
             {"external_id": "c-2", "name": "page_viewed", "id": "e-1"},  # another profile's e-1
             {"external_id": "c-2", "name": "Bad Name"},
             {"external_id": "c-3", "name": "page_viewed"}]
    status, answer = await _batch(api, auth, "events", items)
    assert status == 200
    assert (answer["created"], answer["duplicates"]) == (3, 1)
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(3, "name")]
    status, answer = await _batch(api, auth, "events", items[:3])
    assert (answer["created"], answer["duplicates"]) == (0, 3)
    assert await count_rows(sessions, Event) == 3
    assert await count_rows(sessions, Profile) == 3


async def test_the_single_event_route_stores_a_client_id_once(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    body = {"external_id": "c-1", "name": "page_viewed", "id": "e-9"}
    first = await (await api.post("/v1/events", json=body, headers=auth)).json()
    again = await (await api.post("/v1/events", json=body, headers=auth)).json()
    assert first == again
    assert await count_rows(sessions, Event) == 1


async def test_orders_upsert_by_order_id_and_a_retry_changes_nothing(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    items = [ORDER, {**ORDER, "order_id": "#2", "total": "5", "currency": "JPY"},
             {**ORDER, "order_id": "#3", "total": "1.999"}, {**ORDER, "status": "paid"}]
    status, answer = await _batch(api, auth, "orders", items)
    assert (status, answer["created"], answer["stored"]) == (200, 2, 3)
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(2, "total")]
    clock.advance(timedelta(minutes=5))
    status, answer = await _batch(api, auth, "orders", items)
    assert (answer["created"], answer["updated"]) == (0, 0)
    async with sessions() as session:
        orders = {o.order_id: o for o in await session.scalars(select(Order))}
    assert sorted(orders) == ["#1", "#2"]
    assert orders["#1"].status == "paid"
    assert orders["#1"].updated_at == orders["#1"].created_at  # the retry changed nothing
    status, answer = await _batch(api, auth, "orders", [{**ORDER, "total": "20.00"}])
    assert answer["updated"] == 1


async def test_an_order_naming_another_profile_is_refused_by_index(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await _batch(api, auth, "orders", [ORDER])
    status, answer = await _batch(api, auth, "orders", [{**ORDER, "order_id": "#5"}, {**ORDER, "external_id": "c-9",
                                                                                      "status": "paid"}])
    assert (status, answer["created"], answer["stored"]) == (200, 1, 1)
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(1, "external_id")]
    async with sessions() as session:
        assert await session.scalar(select(Order.status).where(Order.order_id == "#1")) == "placed"
        assert set(await session.scalars(select(Profile.external_id))) == {"c-1"}  # no bare c-9


async def test_cart_events_are_validated_and_stored_in_their_documented_shape(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    cart = {"cart_id": "k-1", "currency": "thb", "total": 59.97,
            "line_items": [{"sku": "TEA-1", "name": "Thai tea", "quantity": 3, "unit_price": 19.99}]}
    items = [{"external_id": "c-1", "name": "cart_updated", "properties": cart},
             {"external_id": "c-1", "name": "checkout_started", "properties": {**cart, "total": "1.001"}},
             {"external_id": "c-1", "name": "checkout_started", "properties": {"cart_id": "k-1"}}]
    status, answer = await _batch(api, auth, "events", items)
    assert status == 200
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [
        (1, "properties.total"), (2, "properties.currency"), (2, "properties.total")]
    async with sessions() as session:
        stored = await session.scalar(select(Event.properties))
    assert stored == {"cart_id": "k-1", "currency": "THB", "total": "59.97",
                      "line_items": [{"sku": "TEA-1", "name": "Thai tea", "quantity": 3, "unit_price": "19.99"}]}


async def test_hostile_batches_get_a_4xx_naming_the_problem(api: Client, auth: dict[str, str]) -> None:
    status, answer = await _batch(api, auth, "events", [{"external_id": "c", "name": "x"}] * 1001)
    assert status == 413 and "1001 items" in answer["error"]
    bodies: list[Any] = [[], {"items": {}}, {"items": [], "more": 1}, "items"]
    for body in bodies:
        resp = await api.post("/v1/profiles:batch", json=body, headers=auth)
        assert resp.status == 422 and (await resp.json())["field"] == "items"
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    status, answer = await _batch(api, auth, "profiles", [{"external_id": "c", "traits": deep}])
    assert status == 422 and "nested deeper" in answer["error"]
    resp = await api.post("/v1/orders:batch", data=b'{"items": [{"order_id": "\xff"}]}', headers=auth)
    assert resp.status == 400 and "UTF-8" in (await resp.json())["error"]
    huge = [{**ORDER, "total": "1e400"}, {**ORDER, "external_id": "x" * 300}]
    status, answer = await _batch(api, auth, "orders", huge)
    assert status == 200
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(0, "total"), (1, "external_id")]
    dates = [{"external_id": "c", "name": "x", "occurred_at": when}
             for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00")]
    status, answer = await _batch(api, auth, "events", dates)
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(0, "occurred_at"), (1, "occurred_at"),
                                                                     (2, "occurred_at")]
    status, answer = await _batch(api, auth, "profiles", ["not an object", None])
    assert [(e["index"], e["field"]) for e in answer["errors"]] == [(0, "(item)"), (1, "(item)")]


async def test_a_batch_may_be_larger_than_a_single_body_up_to_its_own_limit(
        aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock, auth: dict[str, str],
        sessions: async_sessionmaker[AsyncSession]) -> None:
    padding = "x" * 1500
    items = [{"external_id": f"c-{i}", "name": "page_viewed", "properties": {"p": padding}} for i in range(1000)]
    raw = json.dumps({"items": items}).encode()
    assert settings.api.max_body_bytes < len(raw) < settings.api.max_batch_bytes
    api = await aiohttp_client(create_app(settings, clock))
    resp = await api.post("/v1/events:batch", data=io.BytesIO(raw), headers={**auth, **JSON})
    assert (resp.status, (await resp.json())["created"]) == (200, 1000)
    small = settings.model_copy(update={"api": settings.api.model_copy(update={"max_batch_bytes": 100_000})})
    api = await aiohttp_client(create_app(small, clock))
    resp = await api.post("/v1/events:batch", data=io.BytesIO(raw), headers={**auth, **JSON})
    assert resp.status == 413 and "limit of 100000 bytes" in (await resp.json())["error"]
    assert await count_rows(sessions, Event) == 1000
