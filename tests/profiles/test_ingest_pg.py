"""The asyncpg statements of the API's ingest writes (`ingest_pg`, PostgreSQL) store and answer
exactly what the SQLAlchemy ones do (`tests/profiles/test_in_order.py` compares those with one
request after another)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.pg_pool import KEY_LOOKUPS, asyncpg_dsn
from ecrm.profiles import bulk, ingest_pg
from ecrm.profiles.bulk import EventCounts
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import (
    EventIn,
    ProfileIn,
    SessionProfileWrites,
    StoredConsent,
    StoredProfile,
    find_profile,
    record_events,
    upsert_profiles_in_order,
)
from ecrm.profiles.ingest_pg import PgEventWrites, PgIngest
from ecrm.profiles.models import Consent, Profile
from tests.conftest import T0
from tests.factories import add_profile
from tests.profiles.test_in_order import LIMIT, _answers, _events, _rows, _seed, _wipe, _writes
from tests.rows import count_rows

T = TypeVar("T")


@pytest.fixture
async def pg(db_url: str) -> AsyncIterator[PgIngest]:
    if not db_url.startswith("postgresql"):
        pytest.skip("asyncpg: PostgreSQL only")
    ingest = PgIngest(db_url)
    yield ingest
    await ingest.close()


async def test_upserts_on_asyncpg_answer_and_store_what_they_do_through_sqlalchemy(
        sessions: async_sessionmaker[AsyncSession], pg: PgIngest) -> None:
    writes = _writes()
    await _seed(sessions)
    async with sessions.begin() as session:
        expected = _answers(await upsert_profiles_in_order(session, writes, LIMIT))
    expected_rows = await _rows(sessions)
    await _wipe(sessions)
    await _seed(sessions)
    got = _answers(await pg.upsert_profiles_in_order(writes, LIMIT))
    assert (got, await _rows(sessions)) == (expected, expected_rows)
    again = _answers(await pg.upsert_profiles_in_order(writes[:3], LIMIT))  # now all stored: updates only
    assert [kind for kind, _ in again] == ["False", "False", "False"]


async def test_events_on_asyncpg_store_what_they_store_through_sqlalchemy(
        sessions: async_sessionmaker[AsyncSession], pg: PgIngest) -> None:
    when = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    writes = [(EventIn(external_id=f"c-{n % 3}", name="page.viewed", properties={"n": n, "big": 2**70, "th": "ไทย"},
                       occurred_at=when if n % 2 else None, id=f"e-{n % 4}" if n % 3 else None),
               T0 + timedelta(seconds=n)) for n in range(9)]
    async with sessions.begin() as session:
        expected_ids = await record_events(session, writes)
    expected = [row[1:] for row in await _events(sessions)]
    await _wipe(sessions)
    got_ids, stored = await pg.store_events(writes)
    got = await _events(sessions)
    assert [row[1:] for row in got] == expected
    assert [event_id for event_id, _ in got_ids] == [_same(expected_ids, got, i) for i in range(len(writes))]
    assert stored == len(got)
    retried, stored_again = await pg.store_events(writes)  # a retry: events with a client id are not stored twice
    assert stored_again == sum(data.id is None for data, _ in writes)
    assert [ids for (data, _), ids in zip(writes, retried, strict=True) if data.id] == [
        ids for (data, _), ids in zip(writes, got_ids, strict=True) if data.id]


def _same(expected_ids: list[tuple[int, int]], got: list[tuple[object, ...]], index: int) -> object:
    """The id the asyncpg path should answer for write `index`: the row at the position the
    SQLAlchemy path's answer had among its own rows (ids differ between the two runs)."""
    ordered = sorted({event_id for event_id, _ in expected_ids})
    return got[ordered.index(expected_ids[index][0])][0]


async def test_events_with_client_ids_whose_insert_fails_leave_no_bare_profile_behind(
        sessions: async_sessionmaker[AsyncSession], pg: PgIngest, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("events table on fire")

    event = EventIn(external_id="c-new", name="page.viewed", id="e-1")  # a client id: the long way
    monkeypatch.setattr(PgEventWrites, "insert_events", broken)
    with pytest.raises(RuntimeError, match="on fire"):
        await pg.store_events([(event, T0)])
    assert await count_rows(sessions, Profile) == 0
    monkeypatch.undo()
    assert (await pg.store_events([(event, T0)]))[1] == 1
    assert await count_rows(sessions, Profile) == 1


async def test_events_without_client_ids_are_one_statement_and_store_what_sqlalchemy_stores(
        sessions: async_sessionmaker[AsyncSession], pg: PgIngest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush without client ids is `_EVENTS_AND_PROFILES`' one statement, whether its profiles
    exist or not: the same events, bare profiles (created at their first event's `now`) and ids
    in order as the SQLAlchemy path."""
    writes = [(EventIn(external_id=f"c-{n % 3}", name="page.viewed", properties={"n": n, "big": 2**70},
                       occurred_at=T0 if n % 2 else None), T0 + timedelta(seconds=n)) for n in range(7)]
    newcomer = [(EventIn(external_id="c-new", name="page.viewed"), T0), writes[0]]
    async with sessions.begin() as session:
        expected_ids = [await record_events(session, batch) for batch in (writes, writes, newcomer)]
    expected = [row[1:] for row in await _events(sessions)]
    await _wipe(sessions)

    async def long_way(*_args: object) -> None:
        raise AssertionError("no client ids: one statement")

    monkeypatch.setattr(ingest_pg, "store_events", long_way)
    got_ids = [(await pg.store_events(batch))[0] for batch in (writes, writes, newcomer)]
    got = await _events(sessions)
    assert [row[1:] for row in got] == expected
    ranks = sorted(event_id for batch in expected_ids for event_id, _ in batch)
    assert [[got[ranks.index(event_id)][0] for event_id, _ in batch] for batch in expected_ids] == [
        [event_id for event_id, _ in batch] for batch in got_ids]
    assert await count_rows(sessions, Profile) == 4
    async with sessions.begin() as session:  # erased since: a new bare profile
        erased = await find_profile(session, "c-1")
        assert erased is not None
        await erase_profile(session, erased.id)
    [(_, recreated)], stored = await pg.store_events([(EventIn(external_id="c-1", name="page.viewed"), T0)])
    assert stored == 1 and recreated != erased.id
    assert await count_rows(sessions, Profile) == 4


class _CreatedMeanwhile(SessionProfileWrites):
    """Another transaction commits profile `b` right after this one read what was stored."""

    def __init__(self, session: AsyncSession, others: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(session)
        self.others, self.raced = others, False

    async def stored_profiles(self, external_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[StoredConsent]]:
        found = await super().stored_profiles(external_ids)
        if not self.raced:
            self.raced = True
            await add_profile(self.others, external_id="b")
        return found


async def test_a_profile_created_meanwhile_leaves_the_others_answered_created(
        sessions: async_sessionmaker[AsyncSession], pg: PgIngest) -> None:
    writes = [(ProfileIn(external_id=ext, traits={"n": n}), T0) for n, ext in enumerate(["a", "b", "c"])]
    async with sessions.begin() as session:
        answers = await upsert_profiles_in_order(_CreatedMeanwhile(session, sessions), writes, LIMIT)
    assert [(a.values["external_id"], a.created) for a in answers if isinstance(a, StoredProfile)] == \
        [("a", True), ("b", False), ("c", True)]
    async with sessions() as session:
        rows = await session.execute(select(Profile.external_id, Profile.traits))
        stored = {row.external_id: row.traits for row in rows}
    assert stored == {"a": {"n": 0}, "b": {"n": 1}, "c": {"n": 2}}


async def test_a_profile_another_transaction_creates_meanwhile_is_used_not_duplicated(
        db_url: str, sessions: async_sessionmaker[AsyncSession], pg: PgIngest) -> None:
    """The statement's snapshot misses a profile inserted by a transaction still open; its
    INSERT waits on that one's commit and then takes the profile's id."""
    events = [(EventIn(external_id=ext, name="page.viewed"), T0) for ext in ("c-race", "c-other")]
    theirs, ours = await _while_another_creates(db_url, "c-race", pg.store_events(events))
    [(_, race_profile), (_, other_profile)], stored = await ours
    assert (race_profile, stored) == (theirs, 2) and other_profile != theirs
    assert await count_rows(sessions, Profile) == 2


async def test_a_batch_stores_each_client_id_once_per_profile_as_sqlalchemy_does(
        sessions: async_sessionmaker[AsyncSession], pg: PgIngest) -> None:
    events = [EventIn(external_id=f"c-{n % 2}", name="page.viewed", id=f"e-{n % 3}" if n % 4 else None)
              for n in range(8)]  # the last repeats c-1's e-1; two have no client id
    counts = []
    async with sessions.begin() as session:
        counts += [await bulk.record_events(session, events, T0), await bulk.record_events(session, events, T0)]
    expected = [row[1:] for row in await _events(sessions)]
    await _wipe(sessions)
    got = [await pg.record_events(events, T0), await pg.record_events(events, T0)]  # the second: a retry
    assert got == counts == [EventCounts(7, 1), EventCounts(2, 6)]
    assert [row[1:] for row in await _events(sessions)] == expected
    assert await count_rows(sessions, Profile) == 2


async def test_a_new_profile_another_transaction_creates_meanwhile_is_updated_the_long_way(
        db_url: str, sessions: async_sessionmaker[AsyncSession], pg: PgIngest) -> None:
    """The one-write upsert finds its INSERT skipped by a profile committed since its read: it
    rolls back (the other new profile is not left half-written) and applies the upserts again."""
    upserts = [(ProfileIn.model_validate({"external_id": ext, "email": f"{ext}@example.com",
                                          "consent": {"email": {"state": "granted"}}}), T0)
               for ext in ("c-other", "c-race")]
    theirs, ours = await _while_another_creates(db_url, "c-race", pg.upsert_profiles_in_order(upserts, LIMIT))
    answers = await ours
    assert [(o.created, o.profile_id == theirs) for o in answers if isinstance(o, StoredProfile)] == [
        (True, False), (False, True)]
    assert await count_rows(sessions, Profile) == 2
    assert await count_rows(sessions, Consent) == 2


async def test_statements_prepared_on_an_empty_database_keep_to_index_scans_as_it_grows(db_url: str) -> None:
    """A plan cached while profiles was empty must not become a sequential scan per flush once it
    holds thousands (PostgreSQL's generic plan after five executions; no ANALYZE in between)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("asyncpg: PostgreSQL only")
    ingest = PgIngest(db_url, pool_size=1)
    other = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for n in range(8):  # the statement is planned for good while the tables are empty
            await ingest.store_events([(EventIn(external_id=f"c-{n}", name="page.viewed"), T0)])
        await other.execute(
            "INSERT INTO profiles (external_id, locale, time_zone, traits, created_at, updated_at) "
            "SELECT 'bulk-' || n, 'en', 'UTC', '{}', $1, $1 FROM generate_series(1, 5000) AS n", T0)
        before = await _profile_seq_scans(ingest, other)
        for n in range(3):
            await ingest.store_events([(EventIn(external_id=f"bulk-{n + 1}", name="page.viewed"), T0),
                                       (EventIn(external_id=f"new-{n}", name="page.viewed"), T0)])
        assert await _profile_seq_scans(ingest, other) == before
    finally:
        await other.close()
        await ingest.close()


async def _profile_seq_scans(ingest: PgIngest, other: asyncpg.Connection) -> int:
    async with ingest.transaction() as connection:  # the pool's one backend reports its counts
        await connection.execute("SELECT pg_stat_force_next_flush()")
    await other.execute("SELECT pg_stat_clear_snapshot()")
    return int(await other.fetchval("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'profiles'"))


async def _while_another_creates(db_url: str, external_id: str, write: Coroutine[Any, Any, T]
                                 ) -> tuple[int, asyncio.Task[T]]:
    """Start `write` while another transaction holds profile `external_id` inserted and not yet
    committed; check that `write` waits for it; commit. The other's profile id, and `write`."""
    other = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        async with other.transaction():
            theirs = await other.fetchval(
                "INSERT INTO profiles (external_id, locale, time_zone, traits, created_at, updated_at) "
                "VALUES ($2, 'en', 'UTC', '{}', $1, $1) RETURNING id", T0, external_id)
            ours = asyncio.create_task(write)
            await asyncio.sleep(0.3)
            assert not ours.done()  # waiting on the uncommitted profile
    finally:
        await other.close()
    return theirs, ours


_POOL_STATEMENTS = ("_PROFILE_IDS", "_BARE_PROFILES", "_CLIENT_EVENTS", "_EVENTS", "_EVENTS_AND_PROFILES",
                    "_STORED_PROFILES", "_INSERT_PROFILES", "_UPDATE_PROFILES", "_WRITE_CONSENTS", "_WRITE_ALL")


@pytest.mark.parametrize("name", _POOL_STATEMENTS)
async def test_on_a_new_database_the_pools_cached_plans_read_rows_by_key_only(pg: PgIngest, db_url: str,
                                                                                name: str) -> None:
    """The plan a connection caches after five executions is generic, made with the tables' sizes
    at that moment: on a new database, nearly empty. Every index scan of it has a condition (no
    table read whole through its index, as `_WRITE_ALL`'s update of changed profiles did)."""
    connection = await asyncpg.connect(asyncpg_dsn(db_url), server_settings={
        **KEY_LOOKUPS, "plan_cache_mode": "force_generic_plan"})
    try:
        await connection.execute("TRUNCATE profiles, consents, events CASCADE")  # as new: no statistics
        explain = await connection.prepare(f"EXPLAIN (COSTS OFF) {getattr(ingest_pg, name)}")
        plan = [row[0].strip() for row in await explain.fetch(*[None] * len(explain.get_parameters()))]
    finally:
        await connection.close()
    unbounded = [line for line, after in zip(plan, [*plan[1:], ""], strict=True)
                 if re.search(r"Index (Only )?Scan using", line) and not after.startswith("Index Cond")]
    assert not unbounded, "\n".join(plan)
