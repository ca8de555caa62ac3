"""POST /v1/events over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.profiles.models import Event, Profile
from tests.api.conftest import Client
from tests.conftest import T0
from tests.rows import count_rows

ORDER = {"external_id": "c-9", "name": "order.placed", "properties": {"total": "49.90", "currency": "THB"},
         "occurred_at": "2025-03-01T10:00:00+07:00"}


async def test_an_event_for_an_unknown_profile_creates_the_profile_and_answers_202(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    resp = await api.post("/v1/events", json=ORDER, headers=auth)
    assert resp.status == 202
    event_id = (await resp.json())["id"]
    async with sessions() as session:
        event = await session.get_one(Event, event_id)
        profile = await session.get_one(Profile, event.profile_id)
    assert profile.external_id == "c-9"
    assert (event.name, event.properties["currency"]) == ("order.placed", "THB")
    assert (event.occurred_at, event.received_at) == (datetime(2025, 3, 1, 3, 0, tzinfo=UTC), T0)


async def test_events_for_a_known_profile_attach_to_it(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await api.post("/v1/profiles", json={"external_id": "c-9", "first_name": "Ben"}, headers=auth)
    for _ in range(2):
        assert (await api.post("/v1/events", json=ORDER, headers=auth)).status == 202
    async with sessions() as session:
        owners = set(await session.scalars(select(Profile.first_name).join(Event, Event.profile_id == Profile.id)))
    assert owners == {"Ben"}
    assert await count_rows(sessions, Profile) == 1
    assert await count_rows(sessions, Event) == 2


async def test_an_event_without_occurred_at_is_stamped_with_the_app_clock(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    clock.advance(timedelta(minutes=3))
    resp = await api.post("/v1/events", json={"external_id": "c-9", "name": "app:opened"}, headers=auth)
    async with sessions() as session:
        event = await session.get_one(Event, (await resp.json())["id"])
    assert event.occurred_at == event.received_at == T0 + timedelta(minutes=3)


async def test_an_event_with_a_naive_time_or_a_bad_name_answers_422_and_creates_no_profile(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    bad = {**ORDER, "name": "Order Placed", "occurred_at": "2025-03-01T10:00:00"}
    resp = await api.post("/v1/events", json=bad, headers=auth)
    assert resp.status == 422
    assert {f["field"] for f in (await resp.json())["fields"]} == {"name", "occurred_at"}
    assert await count_rows(sessions, Profile) == 0
