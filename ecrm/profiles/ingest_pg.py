"""The API's ingest writes on a raw asyncpg pool, for PostgreSQL: `store_events` (single events
group-committed), `record_events` (a batch route's events) and `upsert_profiles_in_order`
(single profile upserts group-committed) without SQLAlchemy's execution layer.

A small transaction through SQLAlchemy's async engine costs the client about three times what
it costs on asyncpg (`python -m bench.txn_overhead`), and the API's server shares its cores with
PostgreSQL. The algorithms stay in `ingest`; only their statements differ (`PgEventWrites`,
`PgProfileWrites`), written out in SQL as `profiles.arrays` builds them: one array parameter per
column, so each statement is prepared once per connection whatever the batch size.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from ecrm import jsontext
from ecrm.pg_pool import KEY_LOOKUPS, LazyPool
from ecrm.profiles.bulk import EventCounts
from ecrm.profiles.consent import ConsentChange
from ecrm.profiles.ingest import (
    ConsentWrite,
    EventIn,
    EventRow,
    ProfileIn,
    ProfilesRaced,
    StoredConsent,
    StoredProfile,
    TraitsOverCap,
    store_events,
    upsert_profiles_at_once,
    upsert_profiles_in_order,
)

POOL_SIZE = 10  # group-commit flushes (a few per writer) and batch requests, each holding a connection briefly

_PROFILE_IDS = "SELECT external_id, id FROM profiles WHERE external_id = ANY($1::text[])"
_BARE_PROFILES = (
    "INSERT INTO profiles (external_id, locale, time_zone, traits, created_at, updated_at) "
    "SELECT u.external_id, 'en', 'UTC', '{}'::jsonb, u.at, u.at FROM unnest($1::text[], $2::timestamptz[]) "
    "AS u(external_id, at) ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id")
_CLIENT_EVENTS = ("SELECT profile_id, client_id, id FROM events "
                  "WHERE profile_id = ANY($1::bigint[]) AND client_id = ANY($2::text[])")
_EVENTS = (
    "INSERT INTO events (profile_id, name, properties, occurred_at, received_at, client_id) "
    "SELECT u.profile_id, u.name, u.properties::jsonb, u.occurred_at, u.received_at, u.client_id "
    "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[]) "
    "WITH ORDINALITY AS u(profile_id, name, properties, occurred_at, received_at, client_id, n) ORDER BY u.n "
    "ON CONFLICT (profile_id, client_id) DO NOTHING RETURNING id, profile_id, client_id")
# Events and the bare profiles they need, in one statement (autocommit: no BEGIN or COMMIT round
# trip). `known` reads the profiles that exist; `fresh` creates the others, each at the `now` of
# its first event, in external id order (one order everywhere: no deadlock). A profile another
# transaction created since the statement's snapshot is a conflict there: DO UPDATE (a no-op)
# returns its id, where DO NOTHING would return nothing. An event whose client id its profile
# already has (stored before, or earlier in the list) is skipped. Ids ascend in the events' order.
_EVENTS_AND_PROFILES = (
    "WITH u AS (SELECT * FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (external_id text, name text, "
    "properties jsonb, occurred_at timestamptz, received_at timestamptz, client_id text)) WITH ORDINALITY "
    "AS u(external_id, name, properties, occurred_at, received_at, client_id, n)), "
    "known AS (SELECT p.external_id, p.id FROM profiles AS p "
    "WHERE p.external_id = ANY(ARRAY(SELECT DISTINCT u.external_id FROM u))), "
    "fresh AS (INSERT INTO profiles (external_id, locale, time_zone, traits, created_at, updated_at) "
    "SELECT f.external_id, 'en', 'UTC', '{}'::jsonb, f.received_at, f.received_at FROM ("
    "SELECT DISTINCT ON (u.external_id) u.external_id, u.received_at FROM u "
    "WHERE NOT EXISTS (SELECT FROM known WHERE known.external_id = u.external_id) ORDER BY u.external_id, u.n) AS f "
    "ORDER BY f.external_id ON CONFLICT (external_id) DO UPDATE SET external_id = excluded.external_id "
    "RETURNING external_id, id), "
    "ids AS (SELECT external_id, id FROM known UNION ALL SELECT external_id, id FROM fresh) "
    "INSERT INTO events (profile_id, name, properties, occurred_at, received_at, client_id) "
    "SELECT ids.id, u.name, u.properties, u.occurred_at, u.received_at, u.client_id "
    "FROM u JOIN ids ON ids.external_id = u.external_id ORDER BY u.n "
    "ON CONFLICT (profile_id, client_id) DO NOTHING RETURNING id, profile_id")

_STORED_PROFILES = (  # with their consents, a row each (or one row of NULLs), in one round trip
    "SELECT p.id, p.external_id, p.email, p.phone, p.first_name, p.last_name, p.locale, p.time_zone, "
    "p.traits::text AS traits, p.created_at, p.updated_at, c.channel, c.state, c.source, c.updated_at AS consent_at "
    "FROM profiles AS p LEFT OUTER JOIN consents AS c ON c.profile_id = p.id WHERE p.external_id = ANY($1::text[]) "
    "ORDER BY p.external_id FOR NO KEY UPDATE OF p")  # events may still point at them
_PROFILE_STATE = ("id", "external_id", "email", "phone", "first_name", "last_name", "locale", "time_zone", "traits",
                  "created_at", "updated_at")
_INSERT_PROFILES = (
    "INSERT INTO profiles (external_id, email, phone, first_name, last_name, locale, time_zone, traits, created_at, "
    "updated_at) SELECT u.external_id, u.email, u.phone, u.first_name, u.last_name, u.locale, u.time_zone, "
    "u.traits::jsonb, u.created_at, u.updated_at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[]) WITH ORDINALITY "
    "AS u(external_id, email, phone, first_name, last_name, locale, time_zone, traits, created_at, updated_at, n) "
    "ORDER BY u.n ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id")
_UPDATE_PROFILES = (
    "UPDATE profiles AS p SET external_id = u.external_id, email = u.email, phone = u.phone, "
    "first_name = u.first_name, last_name = u.last_name, locale = u.locale, time_zone = u.time_zone, "
    "traits = u.traits::jsonb, created_at = u.created_at, updated_at = u.updated_at "
    "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], "
    "$9::text[], $10::timestamptz[], $11::timestamptz[]) "
    "AS u(id, external_id, email, phone, first_name, last_name, locale, time_zone, traits, created_at, updated_at) "
    "WHERE p.id = u.id")
_WRITE_CONSENTS = (
    "INSERT INTO consents (profile_id, channel, state, source, updated_at) "
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) "
    "ON CONFLICT (profile_id, channel) DO UPDATE SET state = excluded.state, source = excluded.source, "
    "updated_at = excluded.updated_at")
_PROFILE_RECORD = ("external_id text, email text, phone text, first_name text, last_name text, locale text, "
                   "time_zone text, traits jsonb, created_at timestamptz, updated_at timestamptz")
# A flush's profile writes in one statement, each list one jsonb parameter: the new profiles (in
# external id order, as `_INSERT_PROFILES`), the changed ones, and the consents that changed (a
# new profile's found by its external id among those inserted). Returns the profiles inserted.
# The changed ones' ids come again as an array ($4): on a new database the generic plan, made
# while profiles was nearly empty, hashed the whole table (an index scan without a condition)
# to join it with the changed rows, for every write after, however large the table grew
# (~0.4 ms of PostgreSQL a profile upsert at 13,000 profiles); with the ids as an index
# condition, whatever the join, only the changed profiles are read.
_WRITE_ALL = (
    "WITH ins AS (INSERT INTO profiles (external_id, email, phone, first_name, last_name, locale, time_zone, "
    "traits, created_at, updated_at) SELECT r.external_id, r.email, r.phone, r.first_name, r.last_name, r.locale, "
    "r.time_zone, r.traits, r.created_at, r.updated_at "
    f"FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS ({_PROFILE_RECORD})) WITH ORDINALITY AS r(external_id, email, "
    "phone, first_name, last_name, locale, time_zone, traits, created_at, updated_at, n) "
    "ORDER BY r.n ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id), "
    "upd AS (UPDATE profiles AS p SET external_id = r.external_id, email = r.email, phone = r.phone, "
    "first_name = r.first_name, last_name = r.last_name, locale = r.locale, time_zone = r.time_zone, "
    "traits = r.traits, created_at = r.created_at, updated_at = r.updated_at "
    f"FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, {_PROFILE_RECORD}) WHERE p.id = r.id "
    "AND p.id = ANY($4::bigint[])), "
    "con AS (INSERT INTO consents (profile_id, channel, state, source, updated_at) "
    "SELECT coalesce(c.profile_id, ins.id), c.channel, c.state, c.source, c.updated_at "
    "FROM jsonb_to_recordset($3::jsonb) AS c(profile_id bigint, external_id text, channel text, state text, "
    "source text, updated_at timestamptz) LEFT OUTER JOIN ins ON c.profile_id IS NULL "
    "AND ins.external_id = c.external_id WHERE coalesce(c.profile_id, ins.id) IS NOT NULL "
    "ON CONFLICT (profile_id, channel) DO UPDATE SET state = excluded.state, source = excluded.source, "
    "updated_at = excluded.updated_at) "
    "SELECT external_id, id FROM ins")
_COLUMNS = ("external_id", "email", "phone", "first_name", "last_name", "locale", "time_zone", "traits",
            "created_at", "updated_at")  # ingest._STATE_COLUMNS, in the statements' order


def json_text(value: object) -> str:
    """Validated JSON values as text for a jsonb parameter: orjson, or `json.dumps` for what
    orjson does not take (integers past 64 bits); PostgreSQL stores either the same."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def json_array(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as a JSON array for a jsonb parameter (`jsonb_to_recordset`), times in ISO 8601: orjson,
    or `json.dumps` for what orjson does not take (integers past 64 bits)."""
    try:
        return orjson.dumps(rows).decode()
    except TypeError:
        return json.dumps(rows, default=datetime.isoformat)


def events_json(events: Sequence[tuple[EventIn, datetime]]) -> str:
    """Events received each at its `now` as one JSON array of `_EVENTS_AND_PROFILES`' records: one
    parameter, serialized by orjson in a fraction of what encoding six arrays costs asyncpg
    (`json.dumps` for what orjson does not take, integers past 64 bits)."""
    rows = [{"external_id": data.external_id, "name": data.name, "properties": data.properties,
             "occurred_at": data.occurred_at or now, "received_at": now, "client_id": data.id} for data, now in events]
    return json_array(rows)


@dataclass
class PgEventWrites:
    """`store_events`' statements, in as few round trips as they allow: reads need no
    transaction, and the events' INSERT, the last write, commits alone unless bare profiles
    were inserted before it. Then a transaction starts at the profiles' INSERT and the caller
    commits it (`finish`): nothing of a failed flush is committed either way."""

    connection: asyncpg.Connection
    transaction: Any = None  # an asyncpg Transaction once a write needs one

    async def profile_ids(self, external_ids: Sequence[str]) -> dict[str, int]:
        return dict(await self.connection.fetch(_PROFILE_IDS, list(external_ids)))

    async def insert_bare_profiles(self, first_seen: dict[str, datetime]) -> dict[str, int]:
        if self.transaction is None and not self.connection.is_in_transaction():
            self.transaction = self.connection.transaction()
            await self.transaction.start()
        return dict(await self.connection.fetch(_BARE_PROFILES, list(first_seen), list(first_seen.values())))

    async def client_events(self, profile_ids: Sequence[int], client_ids: Sequence[str]
                            ) -> list[tuple[int, str, int]]:
        return [tuple(row) for row in await self.connection.fetch(_CLIENT_EVENTS, list(profile_ids), list(client_ids))]

    async def insert_events(self, rows: Sequence[EventRow]) -> list[tuple[int, int, str | None]]:
        columns = list(zip(*rows, strict=True))
        found = await self.connection.fetch(_EVENTS, list(columns[0]), list(columns[1]),
                                            [json_text(p) for p in columns[2]], list(columns[3]), list(columns[4]),
                                            list(columns[5]))
        return [tuple(row) for row in found]

    async def finish(self, committed: bool) -> None:
        """Commit (or roll back) the transaction a write started, if any."""
        if self.transaction is not None:
            await (self.transaction.commit() if committed else self.transaction.rollback())
            self.transaction = None


@dataclass(frozen=True)
class PgProfileWrites:
    connection: asyncpg.Connection

    async def stored_profiles(self, external_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[StoredConsent]]:
        profiles: dict[int, dict[str, Any]] = {}
        consents = []
        for row in await self.connection.fetch(_STORED_PROFILES, list(external_ids)):
            if row["id"] not in profiles:
                profiles[row["id"]] = {name: row[name] for name in _PROFILE_STATE}
                profiles[row["id"]]["traits"] = jsontext.loads(row["traits"])
            if row["channel"] is not None:
                consents.append((row["id"], row["channel"], row["state"], row["source"], row["consent_at"]))
        return list(profiles.values()), consents

    async def insert_profiles(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        return dict(await self.connection.fetch(_INSERT_PROFILES, *_columns(rows)))

    async def update_profiles(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.connection.execute(_UPDATE_PROFILES, [row["id"] for row in rows], *_columns(rows))

    async def write_all(self, new: Sequence[dict[str, Any]], updates: Sequence[dict[str, Any]],
                        consents: Sequence[ConsentWrite]) -> dict[str, int]:
        consent_rows = [{"profile_id": pid, "external_id": ext, "channel": channel, "state": state, "source": source,
                         "updated_at": at} for pid, ext, channel, state, source, at in consents]
        return dict(await self.connection.fetch(_WRITE_ALL, json_array(new), json_array(updates),
                                                json_array(consent_rows), [row["id"] for row in updates]))

    async def write_consents(self, changes: Sequence[ConsentChange], now: datetime) -> None:
        latest = {(c.profile_id, c.channel): c for c in changes}  # as set_consents: the last one wins
        await self.connection.execute(
            _WRITE_CONSENTS, [c.profile_id for c in latest.values()], [c.channel.value for c in latest.values()],
            [c.state.value for c in latest.values()], [c.source for c in latest.values()],
            [c.at or now for c in latest.values()])


def _columns(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """One list per column of `_COLUMNS`, traits as JSON text."""
    columns = [[row[name] for row in rows] for name in _COLUMNS]
    columns[_COLUMNS.index("traits")] = [json_text(traits) for traits in columns[_COLUMNS.index("traits")]]
    return columns


class PgIngest:
    """A lazily opened asyncpg pool on the app's database, and the writes that run on it."""

    def __init__(self, database_url: str, pool_size: int = POOL_SIZE) -> None:
        self._pool = LazyPool(database_url, pool_size, reset=_keep_session,
                               server_settings=KEY_LOOKUPS)  # every statement here finds rows by a key

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with (await self._pool.get()).acquire() as connection, connection.transaction():
            yield connection

    async def store_events(self, events: Sequence[tuple[EventIn, datetime]]) -> tuple[list[tuple[int, int]], int]:
        """`ingest.store_events`, committed. Events without client ids (the usual flush) are one
        statement whatever profiles they name (`_EVENTS_AND_PROFILES`); a flush with client ids
        answers a retry with the stored event's id, so it takes `store_events`' few statements in
        one transaction (`PgEventWrites`)."""
        if any(data.id is not None for data, _ in events):
            async with self._events() as writes:
                return await store_events(writes, events)
        found = await self._events_and_profiles(events)
        if len(found) != len(events):
            raise RuntimeError(f"{len(events)} events without client ids, {len(found)} stored")
        return sorted((event_id, profile_id) for event_id, profile_id in found), len(found)

    async def record_events(self, events: Sequence[EventIn], now: datetime) -> EventCounts:
        """`bulk.record_events` in one statement: a batch route's events received at `now`,
        each client id stored once per profile."""
        stored = len(await self._events_and_profiles([(data, now) for data in events]))
        return EventCounts(stored, len(events) - stored)

    async def _events_and_profiles(self, events: Sequence[tuple[EventIn, datetime]]) -> list[asyncpg.Record]:
        """(event id, profile id) of each event stored."""
        rows: list[asyncpg.Record] = await (await self._pool.get()).fetch(_EVENTS_AND_PROFILES, events_json(events))
        return rows

    async def upsert_profiles_in_order(self, writes: Sequence[tuple[ProfileIn, datetime]], max_traits_bytes: int
                                       ) -> list[StoredProfile | TraitsOverCap]:
        """`ingest.upsert_profiles_in_order` in one transaction of its own: a read and one write
        (`upsert_profiles_at_once`), or, when another transaction created one of the new profiles
        meanwhile, that rolled back and the long way."""
        try:
            async with self.transaction() as connection:
                return await upsert_profiles_at_once(PgProfileWrites(connection), writes, max_traits_bytes)
        except ProfilesRaced:
            pass
        async with self.transaction() as connection:
            return await upsert_profiles_in_order(PgProfileWrites(connection), writes, max_traits_bytes)

    @asynccontextmanager
    async def _events(self) -> AsyncIterator[PgEventWrites]:
        async with (await self._pool.get()).acquire() as connection:
            writes = PgEventWrites(connection)
            try:
                yield writes
            except BaseException:
                await writes.finish(committed=False)
                raise
            await writes.finish(committed=True)

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: these writes set no session
    state (no SET, LISTEN, cursor or session lock), and asyncpg's default reset costs a round
    trip per transaction. The pool still rolls back a transaction left open."""
