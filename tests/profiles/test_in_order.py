"""The group-commit writes (`upsert_profiles_in_order`, `record_events`) give exactly what the
same requests give one after another through `upsert_profile` / `record_event`: the same answer
to each and the same rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.profiles import profile_json, stored_json
from ecrm.profiles.consent import load_consents
from ecrm.profiles.ingest import (
    EventIn,
    ProfileIn,
    StoredProfile,
    TraitsOverCap,
    record_event,
    record_events,
    traits_size,
    upsert_profile,
    upsert_profiles_in_order,
)
from ecrm.profiles.models import Consent, Event, Profile
from tests.conftest import T0

LIMIT = 300
Outcome = tuple[str, Any]


def _writes() -> list[tuple[ProfileIn, datetime]]:
    bodies: list[dict[str, Any]] = [
        {"external_id": "old", "first_name": "Olga", "traits": {"tier": "gold"}},  # stored before: updated
        {"external_id": "new", "email": "N@Example.com", "consent": {"email": {"state": "granted"}}},
        {"external_id": "new", "traits": {"big": "x" * 200}},
        {"external_id": "new", "traits": {"bigger": "y" * 200}},  # merged past the cap: refused alone
        {"external_id": "new", "consent": {"email": {"state": "withdrawn", "source": "form"}}},
        {"external_id": "new",
         "consent": {"email": {"state": "granted", "source": "shop"}, "sms": {"state": "granted"}}},
        {"external_id": "new", "consent": {"email": {"state": "granted", "source": "restated"}}},  # no change
        {"external_id": "old", "first_name": "Olga"},  # no change: updated_at stays
        {"external_id": "old", "email": None, "last_name": "Ivanova", "locale": "th"},
        {"external_id": "only-big", "traits": {"blob": "z" * 400}},  # a new profile refused: not created
        {"external_id": "third", "time_zone": "Asia/Bangkok"},
    ]
    return [(ProfileIn.model_validate(body), T0 + timedelta(minutes=n)) for n, body in enumerate(bodies, 1)]


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn.model_validate(
            {"external_id": "old", "email": "o@example.com", "consent": {"sms": {"state": "withdrawn"}}}), T0)


async def _one_by_one(sessions: async_sessionmaker[AsyncSession], writes: list[tuple[ProfileIn, datetime]]
                      ) -> list[Outcome]:
    """What the API did before group commit: one transaction per request, the cap checked inside."""
    outcomes: list[Outcome] = []
    for data, now in writes:
        session = sessions()
        async with session:
            transaction = await session.begin()
            profile, created = await upsert_profile(session, data, now)
            size = traits_size(profile.traits)
            if data.traits and size > LIMIT:
                await transaction.rollback()
                outcomes.append(("refused", TraitsOverCap(size, LIMIT)))
                continue
            body = profile_json(profile, await load_consents(session, profile.id))
            await transaction.commit()
        outcomes.append((str(created), body))
    return outcomes


def _answers(outcomes: list[StoredProfile | TraitsOverCap]) -> list[Outcome]:
    return [("refused", o) if isinstance(o, TraitsOverCap) else (str(o.created), stored_json(o)) for o in outcomes]


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> tuple[list[Any], list[Any]]:
    async with sessions() as session:
        profiles = [(p.external_id, p.email, p.phone, p.first_name, p.last_name, p.locale, p.time_zone, p.traits,
                     p.created_at, p.updated_at) for p in await session.scalars(select(Profile).order_by(Profile.id))]
        consents = (await session.execute(
            select(Profile.external_id, Consent.channel, Consent.state, Consent.source, Consent.updated_at)
            .join(Profile, Profile.id == Consent.profile_id).order_by(Profile.external_id, Consent.channel))).all()
    return profiles, [tuple(row) for row in consents]


async def _wipe(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        for table in (Event, Consent, Profile):
            await session.execute(delete(table))


async def test_upserts_in_one_transaction_answer_and_store_what_they_do_one_after_another(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    writes = _writes()
    await _seed(sessions)
    expected = await _one_by_one(sessions, writes)
    expected_rows = await _rows(sessions)
    await _wipe(sessions)
    await _seed(sessions)
    async with sessions.begin() as session:
        got = _answers(await upsert_profiles_in_order(session, writes, LIMIT))
    assert got == expected
    assert await _rows(sessions) == expected_rows
    assert [kind for kind, _ in got].count("refused") == 2
    assert [kind for kind, _ in got].count("True") == 2  # "new" and "third"; "only-big" was refused


async def test_upserts_split_over_several_transactions_give_the_same_as_one(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    writes = _writes()
    await _seed(sessions)
    async with sessions.begin() as session:
        whole = _answers(await upsert_profiles_in_order(session, writes, LIMIT))
    rows = await _rows(sessions)
    await _wipe(sessions)
    await _seed(sessions)
    parts: list[Outcome] = []
    for start in range(0, len(writes), 3):
        async with sessions.begin() as session:
            parts += _answers(await upsert_profiles_in_order(session, writes[start:start + 3], LIMIT))
    assert (parts, await _rows(sessions)) == (whole, rows)


async def _events(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as session:
        return [tuple(row) for row in (await session.execute(
            select(Event.id, Profile.external_id, Profile.created_at, Event.name, Event.properties, Event.occurred_at,
                   Event.received_at).join(Profile, Profile.id == Event.profile_id).order_by(Event.id))).all()]


async def test_events_in_one_transaction_store_what_they_store_one_after_another(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    when = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    writes = [(EventIn(external_id=f"c-{n % 3}", name="page.viewed", properties={"n": n},
                       occurred_at=when if n % 2 else None), T0 + timedelta(seconds=n)) for n in range(7)]
    ids = []
    for data, now in writes:
        async with sessions.begin() as session:
            ids.append((await record_event(session, data, now)).id)
    expected = [row[1:] for row in await _events(sessions)]
    await _wipe(sessions)
    async with sessions.begin() as session:
        got_ids = await record_events(session, writes)
    got = await _events(sessions)
    assert [row[1:] for row in got] == expected
    assert [event_id for event_id, _ in got_ids] == [row[0] for row in got]  # each request gets its own event's id
