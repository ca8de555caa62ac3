"""POST/GET/DELETE /v1/profiles over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.deliveries.models import Delivery
from ecrm.feedback.models import Response
from ecrm.profiles import ingest, ingest_pg
from ecrm.profiles.models import Consent, Event, Profile
from tests.api.conftest import Client
from tests.conftest import T0
from tests.factories import add_delivery
from tests.rows import count_rows

ANA = {
    "external_id": "c-1",
    "email": "Ana.Silva@Example.COM",
    "phone": "+66 81 234 5678",
    "first_name": "Ana",
    "locale": "en-US",
    "time_zone": "Asia/Bangkok",
    "traits": {"tier": "gold", "orders": 3},
    "consent": {"email": {"state": "granted"}},
}


async def test_posting_a_new_profile_creates_it_and_answers_201_with_normalised_fields(
        api: Client, auth: dict[str, str]) -> None:
    resp = await api.post("/v1/profiles", json=ANA, headers=auth)
    assert resp.status == 201
    assert resp.headers["Location"] == "/v1/profiles/c-1"
    body = await resp.json()
    assert body["email"] == "ana.silva@example.com"
    assert body["phone"] == "+66812345678"
    assert (body["locale"], body["time_zone"]) == ("en_US", "Asia/Bangkok")
    assert body["traits"] == {"tier": "gold", "orders": 3}
    assert body["consent"]["email"]["state"] == "granted"
    assert body["consent"]["email"]["source"] == "api"
    assert body["created_at"] == body["updated_at"] == body["consent"]["email"]["updated_at"] == T0.isoformat()


async def test_posting_the_same_external_id_again_updates_only_given_fields_and_merges_traits(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    await api.post("/v1/profiles", json=ANA, headers=auth)
    clock.advance(timedelta(hours=5))
    update = {"external_id": "c-1", "last_name": "Silva", "traits": {"orders": 4, "city": "Bangkok"}}
    resp = await api.post("/v1/profiles", json=update, headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["email"] == "ana.silva@example.com"
    assert (body["first_name"], body["last_name"]) == ("Ana", "Silva")
    assert body["traits"] == {"tier": "gold", "orders": 4, "city": "Bangkok"}
    assert body["consent"]["email"]["state"] == "granted"
    assert (body["created_at"], body["updated_at"]) == (T0.isoformat(), (T0 + timedelta(hours=5)).isoformat())
    assert body["consent"]["email"]["updated_at"] == T0.isoformat()
    assert await count_rows(sessions, Profile) == 1


async def test_a_consent_change_updates_the_one_row_for_that_channel(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await api.post("/v1/profiles", json=ANA, headers=auth)
    withdraw = {"external_id": "c-1", "consent": {"email": {"state": "withdrawn", "source": "preference-center"}}}
    resp = await api.post("/v1/profiles", json=withdraw, headers=auth)
    assert (await resp.json())["consent"]["email"]["source"] == "preference-center"
    async with sessions() as session:
        rows = list(await session.scalars(select(Consent)))
    assert [(r.channel, r.state, r.source) for r in rows] == [("email", "withdrawn", "preference-center")]


async def test_getting_a_profile_returns_what_was_stored(api: Client, auth: dict[str, str]) -> None:
    await api.post("/v1/profiles", json=ANA, headers=auth)
    resp = await api.get("/v1/profiles/c-1", headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert (body["external_id"], body["email"], body["traits"]["tier"]) == ("c-1", "ana.silva@example.com", "gold")


async def test_getting_an_unknown_profile_answers_404(api: Client, auth: dict[str, str]) -> None:
    resp = await api.get("/v1/profiles/nobody", headers=auth)
    assert resp.status == 404
    assert "nobody" in (await resp.json())["error"]


async def test_a_body_that_is_not_json_answers_400_and_stores_nothing(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    resp = await api.post("/v1/profiles", data=b'{"external_id": "c-1",', headers=auth)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("body is not valid JSON: ")
    assert await count_rows(sessions, Profile) == 0


@pytest.mark.parametrize(("change", "field"), [
    ({"email": "nope"}, "email"),
    ({"locale": "xx-invalid"}, "locale"),
    ({"time_zone": "Mars/Base"}, "time_zone"),
    ({"phone": "12345"}, "phone"),
    ({"favourite_colour": "green"}, "favourite_colour"),
    ({"consent": {"email": {"state": "maybe"}}}, "consent.email.state"),
    ({"external_id": ""}, "external_id"),
])
async def test_an_invalid_field_answers_422_naming_it_and_stores_nothing(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession],
        change: dict[str, Any], field: str) -> None:
    resp = await api.post("/v1/profiles", json={**ANA, **change}, headers=auth)
    assert resp.status == 422
    body = await resp.json()
    assert [f["field"] for f in body["fields"]] == [field]
    assert field in body["error"]
    assert await count_rows(sessions, Profile) == 0
    assert await count_rows(sessions, Consent) == 0


async def test_a_failure_after_the_profile_is_written_leaves_nothing_stored(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("consent table on fire")

    write_all = ingest_pg.PgProfileWrites.write_all

    async def written_then_broken(self: ingest_pg.PgProfileWrites, *args: Any) -> None:
        await write_all(self, *args)  # the profile and its consent are written, in the transaction
        raise RuntimeError("consent table on fire")

    monkeypatch.setattr(ingest.SessionProfileWrites, "write_consents", broken)  # SQLAlchemy
    monkeypatch.setattr(ingest_pg.PgProfileWrites, "write_all", written_then_broken)  # asyncpg (PostgreSQL)
    resp = await api.post("/v1/profiles", json=ANA, headers=auth)
    assert resp.status == 500
    assert "consent table on fire" in caplog.text
    assert await count_rows(sessions, Profile) == 0


async def test_deleting_a_profile_erases_it_with_its_consents_events_deliveries_and_responses(
        api: Client, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]) -> None:
    await api.post("/v1/profiles", json=ANA, headers=auth)
    await api.post("/v1/profiles", json={**ANA, "external_id": "c-2", "email": "bo@example.com"}, headers=auth)
    async with sessions.begin() as session:
        for profile in (await session.scalars(select(Profile))).all():
            delivery = await add_delivery(session, profile_id=profile.id)
            session.add(Event(profile_id=profile.id, name="viewed", occurred_at=T0, received_at=T0))
            session.add(Response(delivery_id=delivery.id, profile_id=profile.id, kind="opened", occurred_at=T0))

    resp = await api.delete("/v1/profiles/c-1", headers=auth)

    assert resp.status == 204
    assert (await api.get("/v1/profiles/c-1", headers=auth)).status == 404
    assert (await api.delete("/v1/profiles/c-1", headers=auth)).status == 404
    for entity in (Profile, Consent, Event, Delivery, Response):
        assert await count_rows(sessions, entity) == 1, entity  # only c-2's are left
    assert (await api.get("/v1/profiles/c-2", headers=auth)).status == 200
