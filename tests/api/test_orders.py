"""POST and GET /v1/orders over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.orders.models import Order
from ecrm.profiles.models import Profile
from tests.api.conftest import Client
from tests.conftest import T0
from tests.rows import count_rows

ORDER: dict[str, Any] = {
    "order_id": "#1001", "external_id": "c-1", "status": "placed", "total": "19.99", "currency": "THB",
    "placed_at": "2025-12-31T20:00:00+07:00",
    "line_items": [{"sku": "TEA-1", "name": "Thai tea", "quantity": 2, "unit_price": "9.99"}],
}


async def _post(api: Client, auth: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await api.post("/v1/orders", json=body, headers=auth)
    return resp.status, await resp.json()


async def _fields(api: Client, auth: dict[str, str], body: dict[str, Any]) -> list[str]:
    status, answer = await _post(api, auth, body)
    assert status == 422, answer
    return [f["field"] for f in answer["fields"]]


async def test_a_new_order_answers_201_with_the_order_and_creates_its_profile(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    resp = await api.post("/v1/orders", json=ORDER, headers=auth)
    assert resp.status == 201
    assert resp.headers["Location"] == "/v1/orders/%231001"
    assert await resp.json() == {
        "order_id": "#1001", "external_id": "c-1", "status": "placed", "total": "19.99", "currency": "THB",
        "placed_at": "2025-12-31T13:00:00+00:00", "line_items": ORDER["line_items"],
        "created_at": T0.isoformat(), "updated_at": T0.isoformat()}
    assert await count_rows(sessions, Profile) == 1
    got = await api.get(resp.headers["Location"], headers=auth)
    assert (got.status, (await got.json())["total"]) == (200, "19.99")


async def test_a_later_post_answers_200_with_the_update(api: Client, auth: dict[str, str], clock: FrozenClock) -> None:
    await _post(api, auth, ORDER)
    clock.advance(timedelta(minutes=10))
    status, answer = await _post(api, auth, {**ORDER, "status": "paid", "total": "21.50"})
    assert status == 200
    assert (answer["status"], answer["total"], answer["updated_at"]) == (
        "paid", "21.50", (T0 + timedelta(minutes=10)).isoformat())


async def test_the_same_post_twice_changes_nothing(
        api: Client, auth: dict[str, str], clock: FrozenClock, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, first = await _post(api, auth, ORDER)
    clock.advance(timedelta(minutes=10))
    status, second = await _post(api, auth, ORDER)
    assert (status, second) == (200, first)
    assert await count_rows(sessions, Order) == 1


async def test_amounts_sent_as_json_numbers_stay_exact(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    body = '{"order_id": "o-1", "external_id": "c-1", "status": "paid", "currency": "THB", "total": 12345678901234.57}'
    resp = await api.post("/v1/orders", data=io.BytesIO(body.encode()),
                          headers={**auth, "Content-Type": "application/json"})
    assert (resp.status, (await resp.json())["total"]) == (201, "12345678901234.57")
    status, answer = await _post(api, auth, {**ORDER, "total": 19.99})
    assert (status, answer["total"]) == (201, "19.99")
    async with sessions() as session:
        assert set(await session.scalars(select(Order.total_e4))) == {123456789012345700, 199900}


async def test_an_order_of_another_profile_answers_409_naming_external_id(
        api: Client, auth: dict[str, str]) -> None:
    await _post(api, auth, ORDER)
    status, answer = await _post(api, auth, {**ORDER, "external_id": "c-2", "status": "paid"})
    assert (status, answer["field"]) == (409, "external_id")
    assert "'#1001'" in answer["error"]
    got = await api.get("/v1/orders/%231001", headers=auth)
    assert (await got.json())["status"] == "placed"


async def test_bad_fields_answer_422_naming_each_and_store_nothing(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await _fields(api, auth, {**ORDER, "currency": "THX"}) == ["currency"]
    assert await _fields(api, auth, {**ORDER, "total": "-5"}) == ["total"]
    assert await _fields(api, auth, {**ORDER, "total": "19.999", "status": "lost"}) == ["status", "total"]
    assert await _fields(api, auth, {**ORDER, "line_items": [{**ORDER["line_items"][0], "unit_price": "9.999"}]}) == [
        "line_items.0.unit_price"]
    assert await _fields(api, auth, {**ORDER, "placed_at": "0001-01-01T00:00:00Z"}) == ["placed_at"]
    assert await _fields(api, auth, {**ORDER, "placed_at": "9999-12-31T23:59:59Z"}) == ["placed_at"]
    bad_items = [{"sku": "A", "name": "Tea", "quantity": -1, "unit_price": "1"},
                 {"sku": "B", "name": "Tea", "quantity": 1, "unit_price": "-0.01"}]
    assert await _fields(api, auth, {**ORDER, "line_items": bad_items}) == [
        "line_items.0.quantity", "line_items.1.unit_price"]
    huge = '{"order_id": "o", "external_id": "c", "status": "paid", "currency": "THB", "total": 1e400}'
    resp = await api.post("/v1/orders", data=io.BytesIO(huge.encode()),
                          headers={**auth, "Content-Type": "application/json"})
    assert (resp.status, [f["field"] for f in (await resp.json())["fields"]]) == (422, ["total"])
    assert await count_rows(sessions, Order) == 0
    assert await count_rows(sessions, Profile) == 0


async def test_a_lone_surrogate_in_a_sku_answers_422_naming_it(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    body = ('{"order_id": "o-1", "external_id": "c-1", "status": "paid", "currency": "THB", "total": "1",'
            ' "line_items": [{"sku": "A\\ud800", "name": "Tea", "quantity": 1, "unit_price": "1"}]}')
    resp = await api.post("/v1/orders", data=io.BytesIO(body.encode()),
                          headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 422
    assert (await resp.json())["field"] == "line_items.0.sku"
    assert await count_rows(sessions, Order) == 0


async def test_a_body_nested_too_deep_or_not_json_is_refused(api: Client, auth: dict[str, str]) -> None:
    deep = '{"order_id": "o", "line_items": ' + "[" * 5000 + "]" * 5000 + "}"
    for body, status in ((deep, 400), ("[1, 2", 400), ('{"order_id": NaN}', 400)):
        resp = await api.post("/v1/orders", data=io.BytesIO(body.encode()),
                              headers={**auth, "Content-Type": "application/json"})
        assert resp.status == status, body[:40]
    resp = await api.post("/v1/orders", data=io.BytesIO(b'{"total": "\xff"}'),
                          headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 400


async def test_orders_need_an_api_key(api: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    assert (await api.post("/v1/orders", json=ORDER)).status == 401
    assert (await api.get("/v1/orders/%231001")).status == 401
    assert await count_rows(sessions, Order) == 0


async def test_an_unknown_or_impossible_order_id_answers_404(api: Client, auth: dict[str, str]) -> None:
    for order_id in ("nope", "a%00b", "x" * 300, "%ED%A0%80"):
        resp = await api.get(f"/v1/orders/{order_id}", headers=auth)
        assert (resp.status, (await resp.json())["field"]) == (404, "order_id"), order_id


async def test_erasing_a_profile_erases_its_orders(api: Client, auth: dict[str, str]) -> None:
    await _post(api, auth, ORDER)
    await _post(api, auth, {**ORDER, "order_id": "#1002", "external_id": "c-2"})
    assert (await api.delete("/v1/profiles/c-1", headers=auth)).status == 204
    assert (await api.get("/v1/orders/%231001", headers=auth)).status == 404
    assert (await api.get("/v1/orders/%231002", headers=auth)).status == 200
