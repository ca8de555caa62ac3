"""The CSV import's PostgreSQL path: rows COPY'd into temporary staging tables a batch at a
time, then merged into `profiles` and `consents` in a few set-based statements, all in one
transaction (an import that fails half-way stores nothing).

The merge does what `upsert_profile_batch` does row by row: an existing profile gets the
columns its row names (an empty cell names nothing) and its traits merged shallowly
(`jsonb ||`), `updated_at` set to the row's batch time; a new one is created with that time;
a consent changes (and its `updated_at` moves) only when its state differs. A row whose traits,
merged with the stored ones, would pass the cap is taken out before the merge: the size is
first bounded in SQL (`jsonb::text` is never shorter than compact JSON), then the few
candidates are measured exactly in Python. Each staged row keeps its line, so the reader need
not remember every external id of a large file to refuse a repeated one (`lines_of`).

A profile another transaction creates between the merge's UPDATE and INSERT still gets the
row: its columns as the row names them, traits merged, locale and time zone as it has them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.profiles.ingest import PROFILE_COLUMNS, ProfileIn, traits_size

STAGE_PROFILES = "import_profiles"
STAGE_CONSENTS = "import_consents"
_PROFILE_STAGE = ("external_id", *PROFILE_COLUMNS, "traits", "at", "line")
_CONSENT_STAGE = ("external_id", "channel", "state", "source", "at")

_CREATE = (
    f"CREATE TEMPORARY TABLE {STAGE_PROFILES} (external_id text PRIMARY KEY, email text, phone text, "
    "first_name text, last_name text, locale text, time_zone text, traits text NOT NULL, "
    "at timestamptz NOT NULL, line integer NOT NULL) ON COMMIT DROP",
    f"CREATE TEMPORARY TABLE {STAGE_CONSENTS} (external_id text NOT NULL, channel text NOT NULL, "
    "state text NOT NULL, source text NOT NULL, at timestamptz NOT NULL) ON COMMIT DROP",
)
_LINES = text(f"SELECT external_id, line FROM {STAGE_PROFILES} WHERE external_id = ANY(:ids)")
_CANDIDATES = text(
    f"SELECT s.external_id, s.line, s.traits, p.traits::text FROM {STAGE_PROFILES} s "
    "JOIN profiles p USING (external_id) "
    "WHERE s.traits <> '{}' AND octet_length((p.traits || s.traits::jsonb)::text) > :limit")
_DROP = (text(f"DELETE FROM {STAGE_PROFILES} WHERE external_id = ANY(:ids)"),
         text(f"DELETE FROM {STAGE_CONSENTS} WHERE external_id = ANY(:ids)"))
_SET = ", ".join(f"{name} = coalesce(s.{name}, p.{name})" for name in PROFILE_COLUMNS)
_UPDATE = text(
    f"UPDATE profiles p SET {_SET}, traits = p.traits || s.traits::jsonb, updated_at = s.at "
    f"FROM {STAGE_PROFILES} s WHERE p.external_id = s.external_id")
_RACED = ", ".join(f"{name} = coalesce(excluded.{name}, p.{name})"
                   for name in PROFILE_COLUMNS if name not in ("locale", "time_zone"))
_INSERT = text(
    f"INSERT INTO profiles AS p (external_id, {', '.join(PROFILE_COLUMNS)}, traits, created_at, updated_at) "
    "SELECT s.external_id, s.email, s.phone, s.first_name, s.last_name, coalesce(s.locale, 'en'), "
    "coalesce(s.time_zone, 'UTC'), s.traits::jsonb, s.at, s.at "
    f"FROM {STAGE_PROFILES} s WHERE NOT EXISTS (SELECT 1 FROM profiles q WHERE q.external_id = s.external_id) "
    f"ON CONFLICT (external_id) DO UPDATE SET {_RACED}, traits = p.traits || excluded.traits, "
    "updated_at = excluded.updated_at RETURNING (xmax = 0)")
_CONSENTS = text(
    "INSERT INTO consents (profile_id, channel, state, source, updated_at) "
    f"SELECT p.id, c.channel, c.state, c.source, c.at FROM {STAGE_CONSENTS} c JOIN profiles p USING (external_id) "
    "ON CONFLICT (profile_id, channel) DO UPDATE SET state = excluded.state, source = excluded.source, "
    "updated_at = excluded.updated_at WHERE consents.state <> excluded.state")


class StagedImport:
    """One import's staging tables, in the transaction of `session`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._turn = asyncio.Lock()  # one statement at a time on the session's connection

    async def open(self) -> None:
        for statement in _CREATE:
            await self._session.execute(text(statement))

    async def stage(self, profiles: Sequence[ProfileIn], lines: dict[str, int], now: datetime) -> None:
        """COPY a batch of validated rows (distinct external ids, each from its line) read at `now`."""
        async with self._turn:
            connection = await self._driver()
            await connection.copy_records_to_table(
                STAGE_PROFILES, columns=_PROFILE_STAGE,
                records=[_profile_record(p, now, lines[p.external_id]) for p in profiles])
            consents = [(p.external_id, channel.value, c.state.value, c.source, now)
                        for p in profiles for channel, c in p.consent.items()]
            if consents:
                await connection.copy_records_to_table(STAGE_CONSENTS, columns=_CONSENT_STAGE, records=consents)

    async def lines_of(self, external_ids: Sequence[str]) -> dict[str, int]:
        """The lines of the staged rows naming any of `external_ids`."""
        async with self._turn:
            return dict((await self._session.execute(_LINES, {"ids": list(external_ids)})).all())

    async def drop_oversized(self, limit: int) -> dict[str, int]:
        """Take out the rows whose traits merged with the stored ones would pass `limit` bytes,
        and return their external ids with their lines (a row whose own traits pass it is
        refused as it is read: merging only adds keys)."""
        over = {ext: line for ext, line, staged, stored in await self._session.execute(_CANDIDATES, {"limit": limit})
                if traits_size({**json.loads(stored), **json.loads(staged)}) > limit}
        if over:
            for statement in _DROP:
                await self._session.execute(statement, {"ids": list(over)})
        return over

    async def merge(self) -> int:
        """Write the staged rows into profiles and consents; how many profiles were created."""
        await self._session.execute(_UPDATE)
        created = sum(1 for (inserted,) in await self._session.execute(_INSERT) if inserted)
        await self._session.execute(_CONSENTS)
        return created

    async def _driver(self) -> Any:
        connection = await self._session.connection()
        raw = await connection.get_raw_connection()
        return raw.driver_connection


def _profile_record(profile: ProfileIn, now: datetime, line: int) -> tuple[Any, ...]:
    changes = profile.changes()
    return (profile.external_id, *(changes.get(name) for name in PROFILE_COLUMNS),
            json.dumps(profile.traits, ensure_ascii=False, separators=(",", ":")), now, line)
