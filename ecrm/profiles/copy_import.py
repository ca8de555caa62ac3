"""The CSV import's PostgreSQL path: each batch of rows is COPY'd into temporary staging tables
and merged at once into `profiles` and `consents` in a few set-based statements, all in one
transaction (an import that fails half-way stores nothing). Merging batch by batch lets the
database work while the importer reads the next batch, instead of one long merge at the end.

A batch is inserted first, in one statement (`_NEW`): its lines kept, its rows inserted into
`profiles` (a row naming a stored profile left alone), and the consents of the rows inserted
written from the ids the INSERT returns. Only when some rows name stored profiles (a re-import)
do those go through the probing merge below (`_merge_stored`), with hash and merge joins off.

The merge does what `upsert_profile_batch` does row by row: an existing profile gets the
columns its row names (an empty cell names nothing) and its traits merged shallowly
(`jsonb ||`), `updated_at` set to the row's batch time; a new one is created with that time;
a consent changes (and its `updated_at` moves) only when its state differs. A row whose traits,
merged with the stored ones, would pass the cap is taken out before the merge: the size is
first bounded in SQL (`jsonb::text` is never shorter than compact JSON), then the few
candidates are measured exactly in Python.

A row naming an external id a row of a batch before named is refused, naming that row's line,
without the importer remembering every external id of a large file: either this import wrote
the profile (its xmin is the import's transaction: `_NEW` left the row, `_REPEATED` finds it
among the few such rows) or refused that first row for its size (the importer remembers those).
Every staged row's line is kept (`import_lines`) for the message (`lines_of`), unindexed until a
file turns out to repeat an external id: the index cost ~3 us of the database's ~23 a row.

A batch arrives as COPY text (`staging_text`, built by the process that reads the file), so
writing it costs this process no work per row.

A profile another transaction creates between the merge's UPDATE and INSERT still gets the
row: its columns as the row names them, traits merged, locale and time zone as it has them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.profiles.ingest import PROFILE_COLUMNS, ProfileIn, traits_size
from ecrm.profiles.ingest_pg import json_text

STAGE_PROFILES = "import_profiles"
STAGE_CONSENTS = "import_consents"
STAGE_LINES = "import_lines"
_PROFILE_STAGE = ("external_id", *PROFILE_COLUMNS, "traits", "line")
_CONSENT_STAGE = ("external_id", "channel", "state", "source")

_CREATE = (
    f"CREATE TEMPORARY TABLE {STAGE_PROFILES} (external_id text NOT NULL, email text, phone text, "
    "first_name text, last_name text, locale text, time_zone text, traits text NOT NULL, "
    "line integer NOT NULL) ON COMMIT DROP",
    f"CREATE TEMPORARY TABLE {STAGE_CONSENTS} (external_id text NOT NULL, channel text NOT NULL, "
    "state text NOT NULL, source text NOT NULL) ON COMMIT DROP",
    f"CREATE TEMPORARY TABLE {STAGE_LINES} (external_id text NOT NULL, line integer NOT NULL) ON COMMIT DROP",
)
_INDEX_LINES = text(f"CREATE INDEX ON {STAGE_LINES} (external_id)")
# A batch's few thousand rows meet stored profiles by external_id, on its unique index. Without
# this the planner took a profiles table of 100,000 rows for cheaper to scan whole than to probe
# 5,000 times, for every batch: an import grew quadratic. Set around the statements that join
# the staged rows with profiles (`_merge_stored`), then back: `_NEW` joins a batch with its own
# written rows, a hash join of two small sets.
_PROBE = (text("SET LOCAL enable_hashjoin = off"), text("SET LOCAL enable_mergejoin = off"))
_UNPROBE = (text("SET LOCAL enable_hashjoin = on"), text("SET LOCAL enable_mergejoin = on"))
_LINES = text(f"SELECT external_id, min(line) FROM {STAGE_LINES} WHERE external_id = ANY(:ids) GROUP BY external_id")
# A profile this import wrote is one an earlier row of the file named: its xmin is this
# transaction's (the import makes no savepoints). Asked only of the few rows `_NEW` left.
_OURS = "p.xmin = pg_current_xact_id()::xid"
_REPEATED = text(f"SELECT s.external_id, s.line FROM {STAGE_PROFILES} s JOIN profiles p USING (external_id) "
                 f"WHERE {_OURS}")
_WRITTEN = text(f"SELECT external_id FROM profiles p WHERE external_id = ANY(:ids) AND {_OURS}")
_NAMING = text(f"SELECT external_id, line FROM {STAGE_PROFILES} WHERE external_id = ANY(:ids)")
_KEEP_LINES = text(f"INSERT INTO {STAGE_LINES} (external_id, line) "
                   "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:lines AS integer[]))")
_CANDIDATES = text(
    f"SELECT s.external_id, s.line, s.traits, p.traits::text FROM {STAGE_PROFILES} s "
    "JOIN profiles p USING (external_id) "
    "WHERE s.traits <> '{}' AND octet_length((p.traits || s.traits::jsonb)::text) > :limit")
_DROP = (text(f"DELETE FROM {STAGE_PROFILES} WHERE external_id = ANY(:ids)"),
         text(f"DELETE FROM {STAGE_CONSENTS} WHERE external_id = ANY(:ids)"))
_SET = ", ".join(f"{name} = coalesce(s.{name}, p.{name})" for name in PROFILE_COLUMNS)
_UPDATE = text(
    f"UPDATE profiles p SET {_SET}, traits = p.traits || s.traits::jsonb, updated_at = :at "
    f"FROM {STAGE_PROFILES} s WHERE p.external_id = s.external_id")
_RACED = ", ".join(f"{name} = coalesce(excluded.{name}, p.{name})"
                   for name in PROFILE_COLUMNS if name not in ("locale", "time_zone"))
_NEW_ONLY = f"FROM {STAGE_PROFILES} s WHERE NOT EXISTS (SELECT 1 FROM profiles q WHERE q.external_id = s.external_id)"


def _insert(source: str) -> TextClause:
    """Create the profiles of the staged rows in `source` (FROM ...) and count them; a profile
    another transaction created meanwhile gets the row as _RACED says."""
    return text(
        "WITH written AS ("
        f"INSERT INTO profiles AS p (external_id, {', '.join(PROFILE_COLUMNS)}, traits, created_at, updated_at) "
        "SELECT s.external_id, s.email, s.phone, s.first_name, s.last_name, coalesce(s.locale, 'en'), "
        f"coalesce(s.time_zone, 'UTC'), s.traits::jsonb, CAST(:at AS timestamptz), CAST(:at AS timestamptz) {source} "
        f"ON CONFLICT (external_id) DO UPDATE SET {_RACED}, traits = p.traits || excluded.traits, "
        "updated_at = excluded.updated_at RETURNING (xmax = 0) AS created) "
        "SELECT count(*) FILTER (WHERE created) FROM written")


_INSERT = _insert(_NEW_ONLY)
# Every staged row inserted first, in one statement with its line kept and its consents written:
# a new profile has no consents yet, so they are inserted from the ids the INSERT returns, with
# no second lookup by external id. A row naming a stored profile is left (DO NOTHING): when any
# is (a count below the batch's), the ids of the written ones come back, so that the rest can
# be merged as `_merge_stored` says.
_NEW = text(
    f"WITH kept AS (INSERT INTO {STAGE_LINES} (external_id, line) SELECT external_id, line FROM {STAGE_PROFILES}), "
    f"written AS (INSERT INTO profiles AS p (external_id, {', '.join(PROFILE_COLUMNS)}, traits, created_at, "
    "updated_at) SELECT s.external_id, s.email, s.phone, s.first_name, s.last_name, coalesce(s.locale, 'en'), "
    "coalesce(s.time_zone, 'UTC'), s.traits::jsonb, CAST(:at AS timestamptz), CAST(:at AS timestamptz) "
    f"FROM {STAGE_PROFILES} s ON CONFLICT (external_id) DO NOTHING RETURNING p.id, p.external_id), "
    "consented AS (INSERT INTO consents (profile_id, channel, state, source, updated_at) "
    "SELECT w.id, c.channel, c.state, c.source, CAST(:at AS timestamptz) "
    f"FROM {STAGE_CONSENTS} c JOIN written w ON w.external_id = c.external_id) "
    "SELECT count(*), CASE WHEN count(*) < :staged THEN coalesce(array_agg(external_id::text), '{}') END "
    "FROM written")
_FORGET = (text(f"DELETE FROM {STAGE_PROFILES} s USING unnest(CAST(:ids AS text[])) AS w(external_id) "
                "WHERE s.external_id = w.external_id"),
           text(f"DELETE FROM {STAGE_CONSENTS} c USING unnest(CAST(:ids AS text[])) AS w(external_id) "
                "WHERE c.external_id = w.external_id"))
_CONSENTS = text(
    "INSERT INTO consents (profile_id, channel, state, source, updated_at) "
    "SELECT p.id, c.channel, c.state, c.source, CAST(:at AS timestamptz) "
    f"FROM {STAGE_CONSENTS} c JOIN profiles p USING (external_id) "
    "ON CONFLICT (profile_id, channel) DO UPDATE SET state = excluded.state, source = excluded.source, "
    "updated_at = excluded.updated_at WHERE consents.state <> excluded.state")
_EMPTY = text(f"TRUNCATE {STAGE_PROFILES}, {STAGE_CONSENTS}")


@dataclass(frozen=True)
class Merged:
    """What merging one batch did: profiles created, the rows left out because their traits
    merged with the stored ones would pass the cap, and those naming a profile a batch before
    wrote (external id -> line)."""

    created: int
    oversized: dict[str, int]
    repeated: dict[str, int]


class StagedImport:
    """One import's staging tables, in the transaction of `session`; one statement at a time."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._indexed = False  # the lines' index

    async def open(self) -> None:
        for statement in _CREATE:
            await self._session.execute(text(statement))

    async def stage(self, profiles: bytes, consents: bytes) -> None:
        """COPY a batch's staging rows (`staging_text`: distinct external ids) into the staging tables."""
        connection = await self._driver()
        # a memoryview: asyncpg would take bytes for a file name
        await connection.copy_to_table(STAGE_PROFILES, source=memoryview(profiles), columns=_PROFILE_STAGE)
        if consents:
            await connection.copy_to_table(STAGE_CONSENTS, source=memoryview(consents), columns=_CONSENT_STAGE)

    async def written(self, external_ids: Sequence[str]) -> set[str]:
        """Those of `external_ids` whose profiles this import wrote."""
        return set((await self._session.execute(_WRITTEN, {"ids": list(external_ids)})).scalars())

    async def naming(self, external_ids: Sequence[str]) -> dict[str, int]:
        """The staged rows naming any of `external_ids`: external id -> line."""
        return dict((await self._session.execute(_NAMING, {"ids": list(external_ids)})).all())

    async def drop(self, external_ids: Sequence[str]) -> None:
        """Take the staged rows naming `external_ids` out of the staging tables."""
        for statement in _DROP:
            await self._session.execute(statement, {"ids": list(external_ids)})

    async def keep_lines(self, lines: dict[str, int]) -> None:
        """Remember the lines of rows refused before staging (external id -> line), as first rows."""
        await self._session.execute(_KEEP_LINES, {"ids": list(lines), "lines": list(lines.values())})

    async def merge(self, staged: int, now: datetime, max_traits_bytes: int | None) -> Merged:
        """Write the `staged` staging rows (distinct external ids, none staged before) read at
        `now` into profiles and consents, leaving out the rows whose traits would pass
        `max_traits_bytes` once merged with the stored ones (a row whose own traits pass it is
        refused as it is read: merging only adds keys), and empty the staging tables."""
        created, written = (await self._session.execute(_NEW, {"at": now, "staged": staged})).one()
        merged = Merged(int(created), {}, {})
        if written is not None:
            stored = await self._merge_stored(written, now, max_traits_bytes)
            merged = Merged(merged.created + stored.created, stored.oversized, stored.repeated)
        await self._session.execute(_EMPTY)
        return merged

    async def _merge_stored(self, written: list[str], now: datetime, max_traits_bytes: int | None) -> Merged:
        """Merge the staged rows `_NEW` left, those naming stored profiles, once the `written`
        ones are taken out of the staging tables, and those naming a profile this import wrote
        before; the profiles created (one deleted meanwhile), the rows left out for their size,
        and the repeating ones."""
        for statement in _FORGET:
            await self._session.execute(statement, {"ids": written})
        for statement in _PROBE:
            await self._session.execute(statement)
        repeated: dict[str, int] = dict((await self._session.execute(_REPEATED)).all())
        if repeated:
            await self.drop(list(repeated))
        oversized = await self._drop_oversized(max_traits_bytes) if max_traits_bytes is not None else {}
        await self._session.execute(_UPDATE, {"at": now})
        created = int((await self._session.execute(_INSERT, {"at": now})).scalar_one())
        await self._session.execute(_CONSENTS, {"at": now})
        for statement in _UNPROBE:
            await self._session.execute(statement)
        return Merged(created, oversized, repeated)

    async def lines_of(self, external_ids: Sequence[str]) -> dict[str, int]:
        """The lines of the first rows naming any of `external_ids`, staged or refused before.
        The first call indexes the lines: a file that repeats one external id may repeat more."""
        if not self._indexed:
            await self._session.execute(_INDEX_LINES)
            self._indexed = True
        return dict((await self._session.execute(_LINES, {"ids": list(external_ids)})).all())

    async def _drop_oversized(self, limit: int) -> dict[str, int]:
        over = {ext: line for ext, line, staged, stored in await self._session.execute(_CANDIDATES, {"limit": limit})
                if traits_size({**json.loads(stored), **json.loads(staged)}) > limit}
        if over:
            await self.drop(list(over))
        return over

    async def _driver(self) -> asyncpg.Connection:
        connection = await self._session.connection()
        raw = await connection.get_raw_connection()
        return raw.driver_connection


# COPY's text format: columns split by tabs, rows by newlines, \N for NULL, and a backslash,
# tab, newline or carriage return in a value escaped by a backslash.
_NULL = "\\N"
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# The columns whose default is None: a row that does not name one stages None either way.
_NULL_BY_DEFAULT = ("email", "phone", "first_name", "last_name")
_DEFAULTED = ("locale", "time_zone")  # staged only when the row names them (their defaults are not None)
_PLAIN = itemgetter("external_id", *_NULL_BY_DEFAULT)


def staging_text(rows: Sequence[tuple[int, ProfileIn]]) -> tuple[bytes, bytes]:
    """Validated profiles, each from its line, as COPY text for the staging tables: (profiles,
    consents). Each row holds the columns the profile names (as `changes()` has them), NULL for
    the others, its traits as JSON text (orjson's: the database stores it as `compact_json`'s)."""
    profiles, consents = [], []
    for line, profile in rows:
        values, given = profile.__dict__, profile.model_fields_set
        profiles.append(_copy_row([*_PLAIN(values), *[values[name] if name in given else None for name in _DEFAULTED],
                                   json_text(values["traits"]), str(line)]))
        if profile.consent:
            external_id = _copy_value(profile.external_id)
            # the enums are str: joined as their values
            consents += [_copy_line((external_id, channel, consent.state, _copy_value(consent.source)))
                         for channel, consent in profile.consent.items()]
    return "".join(profiles).encode(), "".join(consents).encode()


def _copy_row(values: list[str | None]) -> str:
    """Values as a line of COPY text. Most hold nothing to escape: the line shows it by holding
    no backslash but its NULLs', a tab only between values, no line break."""
    row = _copy_line([_NULL if value is None else value for value in values])
    if (row.count("\\") != values.count(None) or row.count("\t") != len(values) - 1
            or row.count("\n") != 1 or "\r" in row):
        row = _copy_line([_NULL if value is None else _copy_value(value) for value in values])
    return row


def _copy_value(value: str) -> str:
    return value.translate(_ESCAPES) if _SPECIAL.search(value) else value


def _copy_line(values: Sequence[str]) -> str:
    return "\t".join(values) + "\n"
