"""Synthetic shop data for `bench.segments`: profiles, consents, events and orders with
plausible shapes, written with COPY on PostgreSQL and `executemany` on SQLite.

- profiles: en, fa, th, de, fr (fa_IR and en_US among them), each locale with its time zone and
  cities; joined over two years; 90% with an email, half with a phone; traits points (0-999),
  city, tier, newsletter;
- consents: email granted for 70%, withdrawn for 10%; SMS granted for 30%;
- events: viewed 60%, cart_updated 15%, opened 12%, clicked 8%, order_placed 5%, over the last
  year with recent days busier, some profiles far busier than others;
- orders: EUR, USD, THB and IRR at their own price levels, mostly paid or fulfilled.

The same seed gives the same rows. Profile ids are 1..N, so events and orders name them without
a lookup.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg

CHUNK = 100_000
YEAR = 365 * 86400
LOCALES = {"en": 30, "fa": 18, "th": 15, "de": 10, "fr": 8, "en_US": 12, "fa_IR": 7}
ZONES = {"en": "Europe/London", "fa": "Asia/Tehran", "th": "Asia/Bangkok", "de": "Europe/Berlin",
         "fr": "Europe/Paris", "en_US": "America/New_York", "fa_IR": "Asia/Tehran"}
CITIES = {"en": ["London", "Leeds"], "fa": ["تهران", "اصفهان", "شیراز"], "th": ["กรุงเทพมหานคร", "เชียงใหม่"],
          "de": ["Berlin", "München"], "fr": ["Paris", "Lyon"], "en_US": ["Austin", "Boston"],
          "fa_IR": ["تهران", "تبریز"]}
EVENTS = {"viewed": 60, "cart_updated": 15, "opened": 12, "clicked": 8, "order_placed": 5}
CURRENCIES = {"EUR": (40, 60.0), "USD": (25, 70.0), "THB": (20, 2000.0), "IRR": (15, 5_000_000.0)}
STATUSES = {"paid": 60, "fulfilled": 25, "placed": 8, "cancelled": 4, "refunded": 3}


@dataclass(frozen=True)
class Dataset:
    profiles: int
    events: int
    orders: int
    seed: int = 18
    now: str = "2026-12-01T12:00:00+00:00"  # the instant the data leads up to, and segments are evaluated at

    @property
    def at(self) -> datetime:
        return datetime.fromisoformat(self.now)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _pick(rng: random.Random, weights: dict[str, int], k: int) -> list[str]:
    return rng.choices(list(weights), weights=list(weights.values()), k=k)


def _busy_profile(rng: random.Random, n: int) -> int:
    """Profile ids 1..n, some far busier than others."""
    return 1 + int(n * rng.random() ** 1.6)


def _recent(rng: random.Random, base: float, span: int, power: float) -> datetime:
    return datetime.fromtimestamp(base - span * rng.random() ** power, UTC)


def profile_rows(data: Dataset, start: int, stop: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(f"{data.seed}-profiles-{start}")
    base = data.at.timestamp()
    for pid, locale in zip(range(start, stop), _pick(rng, LOCALES, stop - start), strict=True):
        created = _recent(rng, base, 2 * YEAR, 1.0)
        traits = {"points": rng.randrange(1000), "city": rng.choice(CITIES[locale]),
                  "tier": rng.choice(("bronze", "silver", "gold")), "newsletter": rng.random() < 0.4}
        email = f"c{pid}@bench.example" if rng.random() < 0.9 else None
        phone = f"+4915{pid:09d}" if rng.random() < 0.5 else None
        yield (pid, f"c{pid}", email, phone, f"N{pid % 997}", locale, ZONES[locale],
               json.dumps(traits, ensure_ascii=False), created, created)


PROFILE_COLUMNS = ("id", "external_id", "email", "phone", "first_name", "locale", "time_zone", "traits",
                   "created_at", "updated_at")


def consent_rows(data: Dataset, start: int, stop: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(f"{data.seed}-consents-{start}")
    at = data.at
    for pid in range(start, stop):
        draw = rng.random()
        if draw < 0.8:
            yield (pid, "email", "granted" if draw < 0.7 else "withdrawn", "bench", at)
        if rng.random() < 0.3:
            yield (pid, "sms", "granted", "bench", at)


CONSENT_COLUMNS = ("profile_id", "channel", "state", "source", "updated_at")


def event_rows(data: Dataset, start: int, stop: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(f"{data.seed}-events-{start}")
    base = data.at.timestamp()
    for name in _pick(rng, EVENTS, stop - start):
        at = _recent(rng, base, YEAR, 2.0)
        properties = (f'{{"total": {rng.randrange(5, 500)}}}' if name == "cart_updated"
                      else f'{{"sku": "s{rng.randrange(5000)}"}}' if name == "viewed" else "{}")
        yield (_busy_profile(rng, data.profiles), name, properties, at, at)


EVENT_COLUMNS = ("profile_id", "name", "properties", "occurred_at", "received_at")


def order_rows(data: Dataset, start: int, stop: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(f"{data.seed}-orders-{start}")
    base = data.at.timestamp()
    currencies = _pick(rng, {code: weight for code, (weight, _) in CURRENCIES.items()}, stop - start)
    for number, currency in zip(range(start, stop), currencies, strict=True):
        amount = round(CURRENCIES[currency][1] * rng.lognormvariate(0, 0.7), 0 if currency == "IRR" else 2)
        placed = _recent(rng, base, YEAR, 1.5)
        yield (f"o{number}", _busy_profile(rng, data.profiles), _pick(rng, STATUSES, 1)[0], int(amount * 10_000),
               currency, placed, "[]", placed, placed)


ORDER_COLUMNS = ("order_id", "profile_id", "status", "total_e4", "currency", "placed_at", "line_items",
                 "created_at", "updated_at")

TABLES = (("profiles", PROFILE_COLUMNS, profile_rows, "profiles"),
          ("consents", CONSENT_COLUMNS, consent_rows, "profiles"),
          ("events", EVENT_COLUMNS, event_rows, "events"),
          ("orders", ORDER_COLUMNS, order_rows, "orders"))


def _chunks(total: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, CHUNK):
        yield start, min(total, start + CHUNK)


async def copy_postgres(conn: asyncpg.Connection, data: Dataset) -> None:
    """COPY every table (profile ids 1..N), then move the id sequence past them and VACUUM
    ANALYZE. The rows are consistent by construction, so foreign keys are not checked row by row
    (that check, a trigger per row, would make the load several times slower). VACUUM does what
    autovacuum does to a freshly loaded table in production (it sets the visibility map, without
    which an index-only scan reads the heap too); the test servers run with autovacuum off."""
    await conn.execute("SET session_replication_role = replica")
    for table, columns, rows, sized_by in TABLES:
        total = getattr(data, sized_by)
        for start, stop in _chunks(total):
            first = start + 1 if table in ("profiles", "consents") else start
            last = stop + 1 if table in ("profiles", "consents") else stop
            await conn.copy_records_to_table(table, records=list(rows(data, first, last)), columns=columns)
    await conn.execute("RESET session_replication_role")
    await conn.execute("SELECT setval(pg_get_serial_sequence('profiles', 'id'), $1)", data.profiles)
    await conn.execute("VACUUM ANALYZE")


def insert_sqlite(path: str, data: Dataset) -> None:
    """The same rows with executemany in one transaction per table (SQLite has no COPY)."""
    with sqlite3.connect(path) as db:
        for table, columns, rows, sized_by in TABLES:
            total = getattr(data, sized_by)
            marks = ", ".join("?" for _ in columns)
            offset = 1 if table in ("profiles", "consents") else 0
            for start, stop in _chunks(total):
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                               (tuple(_sqlite_value(v) for v in row)
                                for row in rows(data, start + offset, stop + offset)))
        db.execute("ANALYZE")


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):  # as ecrm's UtcDateTime stores it on SQLite
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value

