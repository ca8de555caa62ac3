"""PostgreSQL statements for the group-commit writes whose text does not depend on how many rows
they carry: each column goes as one array parameter (`unnest`), ids as `= ANY(array)`.

A multi-row VALUES list or an expanded IN list is a new statement for every batch size, which
asyncpg prepares (a round trip, and a parse and plan in PostgreSQL) each time; these are
prepared once per connection. SQLite, with no arrays and cheap statements, keeps the portable
forms (the callers choose).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, ColumnElement, DateTime, Text, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

TEXTS = ARRAY(Text())
IDS = ARRAY(BigInteger())
TIMES = ARRAY(DateTime(timezone=True))

_EVENTS = text(
    "INSERT INTO events (profile_id, name, properties, occurred_at, received_at, client_id) "
    "SELECT u.profile_id, u.name, u.properties::jsonb, u.occurred_at, u.received_at, u.client_id "
    "FROM unnest(:profile_ids, :names, :properties, :occurred, :received, :client_ids) WITH ORDINALITY "
    "AS u(profile_id, name, properties, occurred_at, received_at, client_id, n) ORDER BY u.n "
    "ON CONFLICT (profile_id, client_id) DO NOTHING RETURNING id, profile_id, client_id"
).bindparams(bindparam("profile_ids", type_=IDS), bindparam("names", type_=TEXTS),
             bindparam("properties", type_=TEXTS), bindparam("occurred", type_=TIMES),
             bindparam("received", type_=TIMES), bindparam("client_ids", type_=TEXTS))


_BARE_PROFILES = text(
    "INSERT INTO profiles (external_id, locale, time_zone, traits, created_at, updated_at) "
    "SELECT u.external_id, 'en', 'UTC', '{}'::jsonb, u.at, u.at FROM unnest(:external_ids, :times) "
    "AS u(external_id, at) ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id"
).bindparams(bindparam("external_ids", type_=TEXTS), bindparam("times", type_=TIMES))


def is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def text_among(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """`column = ANY(:values)`, one text[] parameter."""
    return cast(ColumnElement[bool], column == any_(bindparam("values", list(values), type_=TEXTS)))


async def insert_events(session: AsyncSession, rows: Sequence[tuple[int, str, dict[str, Any], datetime, datetime,
                                                                  str | None]]) -> list[tuple[int, int, str | None]]:
    """Insert (profile_id, name, properties, occurred_at, received_at, client_id) rows in order,
    skipping a client id its profile has; (id, profile_id, client_id) of each row stored."""
    columns = list(zip(*rows, strict=True))
    params = {"profile_ids": list(columns[0]), "names": list(columns[1]),
              "properties": [json.dumps(p) for p in columns[2]], "occurred": list(columns[3]),
              "received": list(columns[4]), "client_ids": list(columns[5])}
    return [tuple(row) for row in (await session.execute(_EVENTS, params)).all()]


async def insert_bare_profiles(session: AsyncSession, first_seen: dict[str, datetime]) -> dict[str, int]:
    """Create a bare profile (as `ensure_profile` does) for each external id, at its time,
    unless one exists; the ids of those created."""
    params = {"external_ids": list(first_seen), "times": list(first_seen.values())}
    return dict((await session.execute(_BARE_PROFILES, params)).all())
