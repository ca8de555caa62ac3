"""Scoped API keys over HTTP: every route is public or declares its scope, and a key outside its
scope gets 403 naming the scope, before anything is read or stored (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import create_api_key
from ecrm.api.app import create_app
from ecrm.api.auth import PUBLIC_ROUTES, ROUTE_SCOPES
from ecrm.api.scopes import ALL_SCOPES, Scope
from ecrm.clock import FrozenClock
from ecrm.orders.models import Order
from ecrm.profiles.models import Event, Profile
from ecrm.push.models import PushSubscription
from ecrm.settings import load_settings
from tests.api.conftest import Client
from tests.api.test_push_subscriptions import _body as push_body
from tests.rows import count_rows

ORDER = {"order_id": "#1001", "external_id": "c-1", "status": "placed", "total": "19.99", "currency": "THB"}
# every scoped route: (method, route, path, body, status with the right scope)
CASES: list[tuple[str, str, str, dict[str, Any] | None, int]] = [
    ("POST", "/v1/profiles", "/v1/profiles", {"external_id": "c-2"}, 201),
    ("POST", "/v1/events", "/v1/events", {"external_id": "c-2", "name": "viewed"}, 202),
    ("POST", "/v1/orders", "/v1/orders", {**ORDER, "order_id": "#1002"}, 201),
    ("GET", "/v1/profiles/{external_id}", "/v1/profiles/c-1", None, 200),
    ("DELETE", "/v1/profiles/{external_id}", "/v1/profiles/c-1", None, 204),
    ("GET", "/v1/orders/{order_id}", "/v1/orders/%231001", None, 200),
    ("POST", "/v1/push/subscriptions", "/v1/push/subscriptions", push_body("c-2"), 201),
    ("DELETE", "/v1/push/subscriptions", "/v1/push/subscriptions", {"endpoint": "https://push.example/x"}, 404),
    ("POST", "/v1/push/tokens", "/v1/push/tokens", {"external_id": "c-2"}, 201),
    ("POST", "/v1/profiles:batch", "/v1/profiles:batch", {"items": [{"external_id": "c-2"}]}, 200),
    ("POST", "/v1/events:batch", "/v1/events:batch", {"items": [{"external_id": "c-2", "name": "viewed"}]}, 200),
    ("POST", "/v1/orders:batch", "/v1/orders:batch", {"items": [{**ORDER, "order_id": "#1002"}]}, 200),
    # c-1 has not agreed to email and `welcome` is not transactional: refused after the scope check
    ("POST", "/v1/messages", "/v1/messages", {"template": "welcome", "external_id": "c-1"}, 409),
]
STORED = (Profile, Event, Order, PushSubscription)


def test_every_route_is_public_or_declares_a_scope_and_every_v1_route_a_scope() -> None:
    settings = load_settings(Path("/nonexistent"), environ={}, database_url="sqlite+aiosqlite:///unused.db")
    routes = {(route.method, route.resource.canonical) for route in create_app(settings).router.routes()
              if route.resource is not None}
    undeclared = {(method, path) for method, path in routes if (method, path) not in PUBLIC_ROUTES
                  and ("GET" if method == "HEAD" else method, path) not in ROUTE_SCOPES}
    assert undeclared == set(), "add each route to ecrm.api.auth.ROUTE_SCOPES (or PUBLIC_ROUTES)"
    assert not {(m, p) for m, p in routes if p.startswith("/v1/")} & PUBLIC_ROUTES
    assert set(ROUTE_SCOPES) <= routes, "ROUTE_SCOPES names a route the app does not have"
    assert {(method, route) for method, route, *_ in CASES} == set(ROUTE_SCOPES), "test every scoped route below"


async def _key(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, name: str,
               scopes: frozenset[Scope]) -> dict[str, str]:
    async with sessions.begin() as session:
        return {"Authorization": f"Bearer {await create_api_key(session, name, clock.now(), scopes)}"}


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    return [await count_rows(sessions, table) for table in STORED]


@pytest.mark.parametrize(("method", "route", "path", "body", "status"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
async def test_a_key_needs_the_routes_scope(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
        method: str, route: str, path: str, body: dict[str, Any] | None, status: int) -> None:
    assert (await api.post("/v1/orders", json=ORDER, headers=auth)).status == 201
    needed = ROUTE_SCOPES[(method, route)]
    without = await _key(sessions, clock, "without", ALL_SCOPES - {needed})
    before = await _counts(sessions)

    refused = await api.request(method, path, json=body, headers=without)
    assert refused.status == 403
    answer = await refused.json()
    assert answer["scope"] == needed.value
    assert f"needs the '{needed}' scope" in answer["error"] and "'without'" in answer["error"]
    assert await _counts(sessions) == before

    only = await _key(sessions, clock, "only", frozenset({needed}))
    assert (await api.request(method, path, json=body, headers=only)).status == status


async def test_ingest_keys_cannot_read_or_erase_a_customer_and_admin_keys_cannot_ingest(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    assert (await api.post("/v1/profiles", json={"external_id": "c-1"}, headers=auth)).status == 201
    ingest = await _key(sessions, clock, "shop", frozenset({Scope.INGEST}))
    admin = await _key(sessions, clock, "back office", frozenset({Scope.ADMIN}))
    assert (await api.head("/v1/profiles/c-1", headers=ingest)).status == 403  # HEAD goes as GET
    assert (await api.get("/v1/profiles/c-1", headers=ingest)).status == 403
    assert (await api.delete("/v1/profiles/c-1", headers=ingest)).status == 403
    assert (await api.post("/v1/profiles", json={"external_id": "c-9"}, headers=admin)).status == 403
    assert await count_rows(sessions, Profile) == 1
    assert (await api.get("/v1/profiles/c-1", headers=admin)).status == 200
    send = await _key(sessions, clock, "mailer", frozenset({Scope.SEND}))
    answer = await (await api.post("/v1/events", json={"external_id": "c-1", "name": "x"}, headers=send)).json()
    assert answer["scope"] == "ingest" and "(the key has: send)" in answer["error"]


async def test_an_unknown_route_or_method_answers_404_or_405_to_any_live_key(
        api: Client, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    ingest = await _key(sessions, clock, "shop", frozenset({Scope.INGEST}))
    assert (await api.get("/v1/nothing-here", headers=ingest)).status == 404
    assert (await api.put("/v1/profiles", json={}, headers=ingest)).status == 405
