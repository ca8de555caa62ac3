"""An import over stored profiles, on SQLite (batches) and PostgreSQL (COPY into staging, one
merge): the same rows either way. Named columns and merged traits change, unnamed ones and
restated consents keep their values and times, new profiles get the defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.profiles.csv_import import import_csv
from ecrm.profiles.ingest import ProfileIn, upsert_profile
from ecrm.profiles.models import Consent, Profile
from tests.conftest import T0

CSV = ("external_id,email,consent_email,consent_sms,tier\n"
       "c-1,,yes,no,gold\n"
       "c-2,b@example.com,,yes,\n")


@pytest.mark.parametrize("batch_size", [None, 1])
async def test_an_import_merges_into_stored_profiles_as_the_batch_path_does(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, batch_size: int | None) -> None:
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn.model_validate(
            {"external_id": "c-1", "email": "a@example.com", "locale": "th", "time_zone": "Asia/Bangkok",
             "traits": {"points": 7, "tier": "silver"}, "consent": {"email": {"state": "granted"}}}), T0)
    clock.advance(timedelta(days=1))
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    report = await import_csv(sessions, path, clock, batch_size=batch_size)
    assert (report.imported, report.created, report.skipped) == (2, 1, 0)
    later = T0 + timedelta(days=1)
    async with sessions() as session:
        profiles = {p.external_id: p for p in await session.scalars(select(Profile))}
        consents = {(c.profile_id, c.channel): (c.state, c.source, c.updated_at)
                    for c in await session.scalars(select(Consent))}
    one, two = profiles["c-1"], profiles["c-2"]
    assert (one.email, one.locale, one.time_zone, one.traits) == (
        "a@example.com", "th", "Asia/Bangkok", {"points": 7, "tier": "gold"})
    assert (one.created_at, one.updated_at) == (T0, later)
    assert (two.email, two.locale, two.time_zone, two.traits) == ("b@example.com", "en", "UTC", {})
    assert (two.created_at, two.updated_at) == (later, later)
    assert consents == {
        (one.id, "email"): ("granted", "api", T0),  # restated: unchanged
        (one.id, "sms"): ("withdrawn", "csv:people.csv", later),
        (two.id, "sms"): ("granted", "csv:people.csv", later),
    }


async def test_a_row_repeating_one_read_batches_earlier_is_refused_naming_the_first_line(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    """On PostgreSQL the reader keeps only the previous batch's ids and asks the staging table
    (or its list of rows refused for their size) about older ones: the answers are the same."""
    rows = ["c-1,a", "c-2,b", "c-3,c", "c-big," + "x" * 120, "c-4,d", "c-5,e", "c-1,again", "c-6,f", "c-7,g",
            "c-big,small"]
    path = tmp_path / "people.csv"
    path.write_text("external_id,note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    report = await import_csv(sessions, path, clock, batch_size=2, max_traits_bytes=100)
    assert (report.imported, report.created, report.skipped) == (7, 7, 3)
    assert report.errors == [
        f"{path}:5: the profile's traits would take more than 100 bytes (api.max_traits_bytes); it was left as it was",
        f"{path}:8 external_id: 'c-1' is already on line 2; only the first row is imported "
        "(merge the rows, or import this one on its own)",
        f"{path}:11 external_id: 'c-big' is already on line 5; only the first row is imported "
        "(merge the rows, or import this one on its own)",
    ]
    async with sessions() as session:
        notes: dict[str, str] = dict((await session.execute(
            select(Profile.external_id, Profile.traits["note"].as_string()))).all())
    assert notes == {"c-1": "a", "c-2": "b", "c-3": "c", "c-4": "d", "c-5": "e", "c-6": "f", "c-7": "g"}


async def test_a_row_over_the_cap_only_with_the_stored_traits_is_refused_and_a_repeat_names_its_line(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn(external_id="c-1", traits={"note": "x" * 60}), T0)
    path = tmp_path / "people.csv"
    path.write_text("external_id,other\n"
                    f"c-1,{'y' * 60}\n"  # 60 + 60 bytes once merged: over 100
                    "c-2,b\nc-3,c\nc-4,d\n"
                    "c-1,small\n", encoding="utf-8")
    report = await import_csv(sessions, path, clock, batch_size=2, max_traits_bytes=100)
    assert (report.imported, report.created, report.skipped) == (3, 3, 2)
    assert report.errors == [
        f"{path}:2: the profile's traits would take more than 100 bytes (api.max_traits_bytes); it was left as it was",
        f"{path}:6 external_id: 'c-1' is already on line 2; only the first row is imported "
        "(merge the rows, or import this one on its own)",
    ]
    async with sessions() as session:
        traits: dict[str, Any] = dict((await session.execute(select(Profile.external_id, Profile.traits))).all())
    assert traits == {"c-1": {"note": "x" * 60}, "c-2": {"other": "b"}, "c-3": {"other": "c"}, "c-4": {"other": "d"}}


async def test_an_import_that_fails_half_way_stores_nothing_on_postgresql(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    """PostgreSQL merges batch by batch in one transaction; SQLite commits each batch."""
    path = tmp_path / "people.csv"
    path.write_text("external_id,consent_email\n" + "".join(f"c-{i},yes\n" for i in range(6)), encoding="utf-8")

    def progress(rows: int) -> None:
        if rows == 4:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        await import_csv(sessions, path, clock, progress, batch_size=2)
    async with sessions() as session:
        stored = sorted(await session.scalars(select(Profile.external_id)))
        consents = len(list(await session.scalars(select(Consent.id))))
        postgresql = session.get_bind().dialect.name == "postgresql"
    assert (stored, consents) == (([], 0) if postgresql else (["c-0", "c-1", "c-2", "c-3"], 4))


async def test_a_stored_profile_named_again_a_batch_later_is_refused_even_with_traits_over_the_cap(
        tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    """The first row updates the stored profile; a later one naming it repeats that row, whether
    it reaches the merge or is refused for its size first (PostgreSQL: the profile's xmin says
    this import wrote it)."""
    async with sessions.begin() as session:
        await upsert_profile(session, ProfileIn(external_id="c-1", first_name="Old"), T0)
    path = tmp_path / "people.csv"
    path.write_text("external_id,first_name,note\n"
                    "c-1,Ana,\n"
                    "c-2,Ben,\n"
                    "c-1,Anna,\n"  # reaches the merge, a batch later
                    f"c-3,Cai,\nc-1,Ann,{'x' * 120}\n", encoding="utf-8")  # over the cap by itself
    report = await import_csv(sessions, path, clock, batch_size=2, max_traits_bytes=100)
    assert (report.imported, report.created, report.skipped) == (3, 2, 2)
    assert report.errors == [f"{path}:{line} external_id: 'c-1' is already on line 2; only the first row is imported "
                             "(merge the rows, or import this one on its own)" for line in (4, 6)]
    async with sessions() as session:
        names = sorted(tuple(row) for row in await session.execute(select(Profile.external_id, Profile.first_name)))
    assert names == [("c-1", "Ana"), ("c-2", "Ben"), ("c-3", "Cai")]
