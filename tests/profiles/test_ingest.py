"""Input models and the upsert/event functions of stage 1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.profiles.consent import ConsentChange, set_consents
from ecrm.profiles.ingest import (
    ConsentIn,
    EventIn,
    ProfileIn,
    find_profile,
    input_errors,
    record_event,
    upsert_profile,
    upsert_profiles,
)
from ecrm.profiles.models import Consent, Event, Profile
from ecrm.types import ChannelKind, ConsentState
from tests.conftest import T0
from tests.rows import count_rows


def _fields(data: dict[str, Any], model: type[ProfileIn] | type[EventIn] = ProfileIn) -> list[str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [err.field for err in input_errors(info.value)]


@pytest.mark.parametrize(("given", "stored"), [("fa", "fa"), ("th", "th"), ("en_US", "en_US"), ("en-US", "en_US"),
                                               ("zh-Hant-TW", "zh_Hant_TW")])
def test_profile_in_normalises_locales_to_babel_form(given: str, stored: str) -> None:
    assert ProfileIn(external_id="c", locale=given).locale == stored


def test_profile_in_lowercases_email_and_formats_phone_as_e164() -> None:
    data = ProfileIn(external_id=" c-1 ", email="Ana@Example.COM", phone="+1 (650) 253-0000")
    assert (data.external_id, data.email, data.phone) == ("c-1", "ana@example.com", "+16502530000")


@pytest.mark.parametrize(("data", "field"), [
    ({"external_id": "  "}, "external_id"),
    ({"external_id": "c", "email": "nope"}, "email"),
    ({"external_id": "c", "phone": "0812345678"}, "phone"),
    ({"external_id": "c", "locale": "xx-invalid"}, "locale"),
    ({"external_id": "c", "time_zone": "Mars/Base"}, "time_zone"),
    ({"external_id": "c", "nickname": "Ace"}, "nickname"),
    ({"external_id": "c", "consent": {"fax": {"state": "granted"}}}, "consent.fax"),
    ({"external_id": "c", "consent": {"sms": {"state": "granted", "who": "me"}}}, "consent.sms.who"),
    ({"external_id": "c", "traits": {"note": "a\x00b"}}, "traits"),
    ({"external_id": "c", "traits": ["a"]}, "traits"),
])
def test_profile_in_names_the_invalid_field(data: dict[str, Any], field: str) -> None:
    assert _fields(data) == [field]


def test_event_in_refuses_naive_times_and_names_outside_its_alphabet() -> None:
    data = {"external_id": "c", "name": "Order Placed!", "occurred_at": "2025-01-01T00:00:00"}
    assert _fields(data, EventIn) == ["name", "occurred_at"]
    assert _fields({"external_id": "c", "name": "x" * 101}, EventIn) == ["name"]


async def test_upsert_profile_creates_then_changes_only_the_fields_it_is_given(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        _, created = await upsert_profile(session, ProfileIn(external_id="c-1", email="a@example.com",
                                                             locale="th", traits={"a": 1, "b": 2}), clock.now())
    assert created
    clock.advance(timedelta(hours=1))
    async with sessions.begin() as session:
        profile, created = await upsert_profile(session, ProfileIn(external_id="c-1", phone=None, traits={"b": 3}),
                                                clock.now())
    assert not created
    assert (profile.email, profile.phone, profile.locale, profile.time_zone) == ("a@example.com", None, "th", "UTC")
    assert profile.traits == {"a": 1, "b": 3}
    assert (profile.created_at, profile.updated_at) == (T0, T0 + timedelta(hours=1))


async def test_upsert_profile_moves_updated_at_only_when_something_changed(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    data = ProfileIn(external_id="c-1", first_name="Ana", traits={"a": 1})
    async with sessions.begin() as session:
        await upsert_profile(session, data, clock.now())
    clock.advance(timedelta(days=1))
    async with sessions.begin() as session:
        await upsert_profile(session, data, clock.now())
    async with sessions() as session:
        profile = await find_profile(session, "c-1")
    assert profile is not None and (profile.created_at, profile.updated_at) == (T0, T0)


async def test_an_explicit_null_clears_a_field(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn(external_id="c-1", email="a@example.com", first_name="Ana"), T0)
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn.model_validate({"external_id": "c-1", "email": None}), T0)
    async with sessions() as session:
        profile = await find_profile(session, "c-1")
    assert profile is not None
    assert (profile.email, profile.first_name) == (None, "Ana")


async def test_restating_a_consent_keeps_its_time_and_a_change_moves_it(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        profile, _ = await upsert_profile(session, ProfileIn(external_id="c-1"), clock.now())
    states = [ConsentState.GRANTED, ConsentState.GRANTED, ConsentState.WITHDRAWN]
    seen: list[tuple[str, str, datetime]] = []
    for state in states:
        async with sessions.begin() as session:
            await set_consents(session, [ConsentChange(profile.id, ChannelKind.SMS, state, f"s-{len(seen)}")],
                               clock.now())
        async with sessions() as session:
            row = await session.scalar(select(Consent))
            assert row is not None
            seen.append((row.state, row.source, row.updated_at))
        clock.advance(timedelta(minutes=1))
    assert seen[0] == seen[1] == ("granted", "s-0", T0)
    assert seen[2] == ("withdrawn", "s-2", T0 + timedelta(minutes=2))


async def test_upsert_profiles_creates_new_updates_existing_and_merges_repeats_in_one_batch(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn(external_id="old", first_name="Olga", traits={"tier": "gold"}),
                             clock.now())
    clock.advance(timedelta(hours=2))
    rows = [
        ProfileIn(external_id="old", last_name="Ivanova", traits={"city": "Riga"}),
        ProfileIn(external_id="new", email="n@example.com", traits={"tier": "silver"},
                  consent={ChannelKind.EMAIL: ConsentIn(state=ConsentState.GRANTED)}),
        ProfileIn(external_id="new", first_name="Nina",
                  consent={ChannelKind.EMAIL: ConsentIn(state=ConsentState.WITHDRAWN)}),
    ]
    async with sessions.begin() as session:
        assert await upsert_profiles(session, rows, clock.now()) == 2
    async with sessions() as session:
        old, new = await find_profile(session, "old"), await find_profile(session, "new")
        consent = await session.scalar(select(Consent))
    assert old is not None and new is not None
    assert (old.first_name, old.last_name, old.traits) == ("Olga", "Ivanova", {"tier": "gold", "city": "Riga"})
    assert (new.email, new.first_name, new.traits) == ("n@example.com", "Nina", {"tier": "silver"})
    assert consent is not None and (consent.profile_id, consent.state) == (new.id, "withdrawn")
    later = T0 + timedelta(hours=2)
    assert (old.created_at, old.updated_at, new.created_at, new.updated_at) == (T0, later, later, later)
    assert consent.updated_at == later


async def test_record_event_creates_a_bare_profile_for_an_unknown_external_id(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    when = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    async with sessions.begin() as session:
        event = await record_event(session, EventIn(external_id="c-7", name="cart.abandoned", occurred_at=when),
                                   clock.now())
    async with sessions() as session:
        profile = await find_profile(session, "c-7")
        stored = await session.get_one(Event, event.id)
    assert profile is not None and (profile.locale, profile.time_zone, profile.traits) == ("en", "UTC", {})
    assert (profile.created_at, profile.updated_at) == (T0, T0)
    assert (stored.profile_id, stored.occurred_at, stored.received_at) == (profile.id, when, T0)
    assert await count_rows(sessions, Profile) == 1


async def test_an_event_without_occurred_at_happened_when_it_was_received(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    clock.advance(timedelta(minutes=5))
    async with sessions.begin() as session:
        event = await record_event(session, EventIn(external_id="c-7", name="cart.abandoned"), clock.now())
    async with sessions() as session:
        stored = await session.get_one(Event, event.id)
    assert stored.occurred_at == stored.received_at == T0 + timedelta(minutes=5)


async def test_concurrent_writes_for_one_new_external_id_make_one_profile(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async def event(n: int) -> None:
        async with sessions.begin() as session:
            await record_event(session, EventIn(external_id="c-race", name="page.viewed", properties={"n": n}), T0)

    async def profile(n: int) -> None:
        async with sessions.begin() as session:
            await upsert_profile(session, ProfileIn(external_id="c-race", traits={f"t{n}": n}), T0)

    await asyncio.gather(*(event(n) for n in range(4)), *(profile(n) for n in range(4)))
    async with sessions() as session:
        found = await find_profile(session, "c-race")
    assert found is not None and found.traits == {f"t{n}": n for n in range(4)}
    assert await count_rows(sessions, Profile) == 1
    assert await count_rows(sessions, Event) == 4
