"""Stage 1 ingest: validate profiles and events from outside, then write them.

The API, the CSV import and (later) shop connectors all come through here. The input models
refuse unknown fields and normalise what they accept: lowercased email, E.164 phone,
`en_US`-style locale, IANA time zone. An update changes only the fields the input names,
and merges traits shallowly into the stored ones. Every write takes the `now` its caller read
from its clock: `created_at`, `updated_at`, an event's `received_at` (and its `occurred_at` when
the input leaves it out).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, cast
from zoneinfo import ZoneInfo

import email_validator
import phonenumbers
from babel import Locale, UnknownLocaleError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import among, dialect_insert
from ecrm.profiles import arrays
from ecrm.profiles.consent import ConsentChange, set_consents
from ecrm.profiles.models import Consent, Event, Profile
from ecrm.types import ChannelKind, ConsentState

_EVENT_NAME = re.compile(r"[a-z0-9_.:]+")
PROFILE_COLUMNS = ("email", "phone", "first_name", "last_name", "locale", "time_zone")


def no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text and JSONB; refuse it here rather than fail on write.
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain the NUL character")
    return value


PLAIN_JSON = "plain_json"  # validation context: the input came from a parser that leaves nothing to check here


def _plain_json(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    if info.context is not None and info.context.get(PLAIN_JSON):  # parsed JSON without NaN, Infinity or NUL
        return value
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise PydanticCustomError("json", "must hold only JSON values (no NaN or Infinity)") from None
    if "\\u0000" in text.replace("\\\\", ""):  # an escaped NUL, not an escaped backslash before "u0000"
        raise PydanticCustomError("nul_character", "must not contain the NUL character")
    return value


def phone_e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise PydanticCustomError("phone", "not a valid phone number; use the international form, e.g. +66812345678")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=1024)
def known_locale(value: str) -> str:
    # Babel parses a tag in ~8 us; a shop sends a handful of distinct ones. Errors are not cached.
    try:
        return str(Locale.parse(value.replace("-", "_")))
    except (ValueError, UnknownLocaleError):
        raise PydanticCustomError("locale", "not a known locale such as en_US, fa or th") from None


@functools.lru_cache(maxsize=1024)
def known_time_zone(value: str) -> str:
    # A file names a handful of zones a million times; errors are not cached.
    try:
        ZoneInfo(value)
    except (KeyError, ValueError, OSError):
        raise PydanticCustomError("time_zone", "not an IANA time zone such as Asia/Bangkok") from None
    return value


def _event_name(value: str) -> str:
    if not _EVENT_NAME.fullmatch(value):
        raise PydanticCustomError("event_name", "use only lowercase letters, digits, '_', '.' and ':'")
    return value


TEXT_MAX, PHONE_MAX, LOCALE_MAX, TIME_ZONE_MAX = 200, 40, 35, 64  # characters
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TEXT_MAX),
                 AfterValidator(no_nul)]
VALID_EMAILS: dict[str, Any] = {}  # address as sent -> as validated; cleared when full
VALID_EMAILS_MAX = 50_000


def _remember_email(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """EmailStr's own validation (~50-100 us, most of a profile's) once per address: a shop
    sends the same customers' addresses again and again; a plain address (`plain_email`, ~1 us,
    what EmailStr then Email's lowercasing give it) not even once, so a shop's new customers cost
    no more than its known ones. Only valid addresses are kept, so every error is EmailStr's, as
    before; the schema stays EmailStr's."""
    if isinstance(value, str):
        known = VALID_EMAILS.get(value) or plain_email(value)
        if known is not None:
            return known
    valid = handler(value)
    if isinstance(value, str):
        if len(VALID_EMAILS) >= VALID_EMAILS_MAX:
            VALID_EMAILS.clear()
        VALID_EMAILS[value] = valid
    return valid


Email = Annotated[EmailStr, WrapValidator(_remember_email), AfterValidator(str.lower)]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL = re.compile(rf"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@((?:{_LABEL}\.)+{_LABEL})", re.ASCII)
_EMAIL_MAX, _DOMAIN_MAX = 254, 253


def plain_email(value: str) -> str | None:
    """`value` as Email would give it, for a plain ASCII address: dot-separated letters, digits,
    `_`, `+` and `-` before the @-sign, hostname labels after it, ending in a letter, with no
    `--` (which could be Punycode) and no special-use domain (email_validator's list). EmailStr
    takes such an address as it is but for the domain's case (Email then lowercases it all), in
    ~1 us instead of ~50. None for any other value: only EmailStr can tell."""
    match = _PLAIN_EMAIL.fullmatch(value)
    if match is None or len(value) > _EMAIL_MAX or not _plain_domain(match[1]):
        return None
    return value.lower()


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> bool:
    # A file names a few domains a million times. email_validator's list of special-use
    # names is read as each domain is first seen.
    domain = domain.lower()
    return (len(domain) <= _DOMAIN_MAX and domain[-1].isalpha() and "--" not in domain
            and not any(domain == name or domain.endswith("." + name)
                        for name in email_validator.SPECIAL_USE_DOMAIN_NAMES))


Phone = Annotated[str, StringConstraints(max_length=PHONE_MAX), AfterValidator(phone_e164)]
LocaleTag = Annotated[str, StringConstraints(strip_whitespace=True, max_length=LOCALE_MAX),
                      AfterValidator(known_locale)]
TimeZone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=TIME_ZONE_MAX),
                     AfterValidator(known_time_zone)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_event_name)]
EARLIEST_EVENT, LATEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


def _event_time(value: datetime) -> datetime:
    """Events happen in 1970..9998 (UTC); outside that, converting to UTC can overflow."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_EVENT <= utc < LATEST_EVENT:
        raise PydanticCustomError("event_time", "must be between 1970-01-01 and 9998-12-31 (UTC)")
    return value


EventTime = Annotated[AwareDatetime, AfterValidator(_event_time)]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: ConsentState
    source: Text = "api"


class ProfileIn(BaseModel):
    """A profile as a shop or back office sends it; only `external_id` is required."""

    model_config = ConfigDict(extra="forbid")

    external_id: Text
    email: Email | None = None
    phone: Phone | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    locale: LocaleTag = "en"
    time_zone: TimeZone = "UTC"
    traits: JsonObject = Field(default_factory=dict)
    consent: dict[ChannelKind, ConsentIn] = Field(default_factory=dict)

    def changes(self) -> dict[str, Any]:
        """The profile columns this input sets (traits aside, which merge instead)."""
        return {name: getattr(self, name) for name in PROFILE_COLUMNS if name in self.model_fields_set}

    def consent_changes(self, profile_id: int) -> list[ConsentChange]:
        return [ConsentChange(profile_id, channel, c.state, c.source) for channel, c in self.consent.items()]


class EventIn(BaseModel):
    """Something a person did, e.g. `order.placed`; `occurred_at` must carry a time zone, and
    without one the event happened when it was received (see `record_event`)."""

    model_config = ConfigDict(extra="forbid")

    external_id: Text
    name: EventName
    properties: JsonObject = Field(default_factory=dict)
    occurred_at: EventTime | None = None
    id: Text | None = None  # the client's own id for the event: stored once per profile

    @field_validator("properties")
    @classmethod
    def _cart_shape(cls, properties: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """`cart_updated` / `checkout_started` carry a cart (`ecrm.orders.carts`)."""
        from ecrm.orders.carts import CART_EVENTS, cart_properties  # orders build on this module

        return cart_properties(properties) if info.data.get("name") in CART_EVENTS else properties


@dataclass(frozen=True)
class InputError:
    """One invalid field of an input: dotted path (`consent.email.state`), message, given value."""

    field: str
    message: str
    value: Any


def input_errors(exc: ValidationError) -> list[InputError]:
    return [InputError(_field_path(err["loc"]), _message(err["type"], err["msg"]), err["input"])
            for err in exc.errors(include_url=False)]


def _field_path(loc: tuple[int | str, ...]) -> str:
    # pydantic adds `[key]` for a bad mapping key and `function-after[...]` for validators.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    return ".".join(parts)


def _message(kind: str, msg: str) -> str:
    if kind == "extra_forbidden":
        return "unknown field (check its spelling)"
    if kind == "missing":
        return "required field is missing"
    return msg


@dataclass(frozen=True)
class UpsertCounts:
    created: int
    updated: int
    oversized: tuple[str, ...] = ()  # external ids left unchanged: their traits would pass the cap


_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps builds one a call
_json_text = json.encoder.encode_basestring  # a str as a JSON string, non-ASCII kept


def compact_json(value: dict[str, Any]) -> str:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"))`; an object of text (every
    CSV import's traits) is written directly, in a third of the time."""
    items = []
    for key, item in value.items():
        if type(key) is not str or type(item) is not str:
            return _compact_json(value)
        items.append(_json_text(key) + ":" + _json_text(item))
    return "{" + ",".join(items) + "}"


def traits_size(traits: dict[str, Any]) -> int:
    """A profile's traits as stored: bytes of compact UTF-8 JSON (what the cap counts)."""
    return len(compact_json(traits).encode())


def text_traits_within(traits: dict[str, str], limit: int) -> bool:
    """Whether traits of text surely take at most `limit` bytes, without encoding them: a
    character takes at most 6 bytes in JSON (`\\u001f`), and each item adds 6 (quotes, `:`, `,`)."""
    return 6 * sum(len(key) + len(value) + 1 for key, value in traits.items()) + 2 <= limit


async def find_profile(session: AsyncSession, external_id: str) -> Profile | None:
    return await session.scalar(select(Profile).where(Profile.external_id == external_id))


async def upsert_profile(session: AsyncSession, data: ProfileIn, now: datetime) -> tuple[Profile, bool]:
    """Create or update the profile named by `data.external_id` at `now`; True when it was created.

    `updated_at` moves only when a field really changed."""
    await _lock_on_sqlite(session, [data.external_id])
    profile_id, created = await ensure_profile(session, data.external_id, now)
    profile = await session.get_one(Profile, profile_id, with_for_update=True, populate_existing=True)
    for name, value in data.changes().items():
        setattr(profile, name, value)
    if data.traits:
        profile.traits = {**profile.traits, **data.traits}
    if session.is_modified(profile):
        profile.updated_at = now
    await session.flush()
    await set_consents(session, data.consent_changes(profile.id), now)
    return profile, created


async def record_event(session: AsyncSession, data: EventIn, now: datetime) -> Event:
    """Store an event received at `now`; a profile not seen before is created bare, to be filled in later."""
    profile_id, _ = await ensure_profile(session, data.external_id, now)
    if data.id is not None:  # a client's retry: the event is stored already
        stored = await session.scalar(select(Event).where(Event.profile_id == profile_id, Event.client_id == data.id))
        if stored is not None:
            return stored
    event = Event(profile_id=profile_id, name=data.name, properties=data.properties,
                  occurred_at=data.occurred_at or now, received_at=now, client_id=data.id)
    session.add(event)
    await session.flush()
    return event


async def ensure_profile(session: AsyncSession, external_id: str, now: datetime) -> tuple[int, bool]:
    found = await profile_ids(session, [external_id])
    if external_id in found:
        return found[external_id], False
    stmt = dialect_insert(session, Profile).values(external_id=external_id, created_at=now, updated_at=now)
    new_id = await session.scalar(stmt.on_conflict_do_nothing(index_elements=["external_id"]).returning(Profile.id))
    if new_id is not None:
        return new_id, True
    # Another transaction created it between our SELECT and INSERT.
    return (await profile_ids(session, [external_id]))[external_id], False


async def _lock_on_sqlite(session: AsyncSession, external_ids: Collection[str]) -> None:
    # SQLite ignores FOR UPDATE, and its driver starts the transaction at the first write, so a
    # concurrent traits merge could read a stale row. A no-op write first takes the write lock.
    if session.get_bind().dialect.name == "sqlite":
        touch = update(Profile).where(Profile.external_id.in_(external_ids)).values(external_id=Profile.external_id)
        await session.execute(touch, execution_options={"synchronize_session": False})


async def profile_ids(session: AsyncSession, external_ids: Collection[str]) -> dict[str, int]:
    stmt = select(Profile.external_id, Profile.id).where(among_external_ids(session, external_ids))
    return dict((await session.execute(stmt)).all())


def among_external_ids(session: AsyncSession, external_ids: Collection[str]) -> ColumnElement[bool]:
    if arrays.is_postgresql(session):
        return arrays.text_among(PROFILES.c.external_id, list(external_ids))
    return PROFILES.c.external_id.in_(external_ids)


async def upsert_profiles(session: AsyncSession, rows: Sequence[ProfileIn], now: datetime) -> int:
    """Batch `upsert_profile` for imports; returns how many profiles were written."""
    counts = await upsert_profile_batch(session, rows, now)
    return counts.created + counts.updated


async def upsert_profile_batch(session: AsyncSession, rows: Sequence[ProfileIn], now: datetime,
                               max_traits_bytes: int | None = None) -> UpsertCounts:
    """Upsert a batch at `now` in a few statements; rows naming the same external_id apply in order.
    A row whose traits, merged with the stored ones, would pass `max_traits_bytes` is left out
    (the profile stays as it was) and named in `oversized`."""
    merged = _merge_duplicates(rows)
    await _lock_on_sqlite(session, merged)
    existing = await _existing_traits(session, merged)
    oversized = _oversized(merged, existing, max_traits_bytes)
    for ext in oversized:
        del merged[ext]
        existing.pop(ext, None)
    created = await _insert_new(session, [row for ext, row in merged.items() if ext not in existing], now)
    raced = [ext for ext in merged if ext not in existing and ext not in created]
    if raced:
        existing |= await _existing_traits(session, raced)
    await _update_existing(session, [merged[ext] for ext in existing], existing, now)
    ids = created | {ext: pid for ext, (pid, _) in existing.items()}
    await set_consents(session, [c for ext, row in merged.items() for c in row.consent_changes(ids[ext])], now)
    return UpsertCounts(created=len(created), updated=len(existing), oversized=oversized)


def _oversized(merged: dict[str, ProfileIn], existing: dict[str, tuple[int, Any]],
               limit: int | None) -> tuple[str, ...]:
    if limit is None:
        return ()
    return tuple(ext for ext, row in merged.items()
                 if row.traits and traits_size({**existing.get(ext, (0, {}))[1], **row.traits}) > limit)


def _merge_duplicates(rows: Sequence[ProfileIn]) -> dict[str, ProfileIn]:
    merged: dict[str, ProfileIn] = {}
    for row in rows:
        first = merged.get(row.external_id)
        merged[row.external_id] = row if first is None else first.model_copy(update={
            **row.changes(),
            "traits": {**first.traits, **row.traits},
            "consent": {**first.consent, **row.consent},
        })
    return merged


async def _existing_traits(session: AsyncSession, external_ids: Collection[str]) -> dict[str, tuple[int, Any]]:
    stmt = (select(Profile.external_id, Profile.id, Profile.traits)  # locked in one order everywhere: no deadlock
            .where(among_external_ids(session, external_ids)).order_by(Profile.external_id).with_for_update())
    return {ext: (pid, traits) for ext, pid, traits in await session.execute(stmt)}


async def _insert_new(session: AsyncSession, rows: Sequence[ProfileIn], now: datetime) -> dict[str, int]:
    if not rows:
        return {}
    values = [{"external_id": row.external_id, **{name: getattr(row, name) for name in PROFILE_COLUMNS},
               "traits": row.traits, "created_at": now, "updated_at": now}
              for row in sorted(rows, key=lambda row: row.external_id)]  # as above: one order everywhere
    stmt = dialect_insert(session, Profile).on_conflict_do_nothing(index_elements=["external_id"])
    result = await session.execute(stmt.returning(Profile.external_id, Profile.id), values)
    return dict(result.all())


async def _update_existing(session: AsyncSession, rows: Sequence[ProfileIn],
                           existing: dict[str, tuple[int, Any]], now: datetime) -> None:
    if not rows:
        return
    values = []
    for row in rows:
        profile_id, traits = existing[row.external_id]
        values.append({"id": profile_id, **row.changes(), "traits": {**traits, **row.traits}, "updated_at": now})
    await session.execute(update(Profile), values)


# ---- group commit: many API requests in one transaction, each as if it came alone, in order ----

@dataclass(frozen=True)
class StoredProfile:
    """A profile as one upsert left it (what the API answers): its columns, and its consents
    by channel as (state, source, updated_at)."""

    values: dict[str, Any]
    consents: dict[str, tuple[str, str, datetime]]
    created: bool
    profile_id: int = 0  # known once written


@dataclass(frozen=True)
class TraitsOverCap:
    """An upsert refused and not applied: the merged traits would take `size` bytes."""

    size: int
    limit: int


PROFILES, EVENTS = cast(Table, Profile.__table__), cast(Table, Event.__table__)  # Core: no ORM cost per row
_STATE_COLUMNS = ("external_id", *PROFILE_COLUMNS, "traits", "created_at", "updated_at")
_Consents = dict[str, tuple[str, str, datetime]]  # by channel: (state, source, updated_at)
_State = tuple[dict[str, Any], _Consents]  # a profile's values and consents


ClientKey = tuple[int, str]  # (profile id, the client's own event id)
StoredConsent = tuple[int, str, str, str, datetime]  # profile id, channel, state, source, updated_at
PENDING = -1  # a client key inserted by this call, its id not known yet


async def record_events(session: AsyncSession, events: Sequence[tuple[EventIn, datetime]]
                        ) -> list[tuple[int, int]]:
    """Store events, each received at its own `now`, in a few statements; (event id, profile id)
    in order (see `store_events`)."""
    return (await store_events(session, events))[0]


class EventWrites(Protocol):
    """The statements `store_events` runs: `SessionWrites` (SQLAlchemy, either database) or
    `ingest_pg.PgEventWrites` (a raw asyncpg connection, the API's PostgreSQL path)."""

    async def profile_ids(self, external_ids: Sequence[str]) -> dict[str, int]: ...

    async def insert_bare_profiles(self, first_seen: dict[str, datetime]) -> dict[str, int]:
        """A bare profile per external id (sorted), at its time, unless one exists; the ids created."""

    async def client_events(self, profile_ids: Sequence[int], client_ids: Sequence[str]
                            ) -> list[tuple[int, str, int]]:
        """(profile id, client id, event id) of stored events among both lists."""

    async def insert_events(self, rows: Sequence[EventRow]) -> list[tuple[int, int, str | None]]:
        """Insert rows in order, skipping a client id its profile has; (id, profile id, client id) stored."""


EventRow = tuple[int, str, dict[str, Any], datetime, datetime, str | None]


@dataclass(frozen=True)
class SessionWrites:
    session: AsyncSession

    async def profile_ids(self, external_ids: Sequence[str]) -> dict[str, int]:
        return await profile_ids(self.session, external_ids)

    async def insert_bare_profiles(self, first_seen: dict[str, datetime]) -> dict[str, int]:
        if arrays.is_postgresql(self.session):
            return await arrays.insert_bare_profiles(self.session, first_seen)
        rows = [{"external_id": ext, "locale": "en", "time_zone": "UTC", "traits": {},
                 "created_at": at, "updated_at": at} for ext, at in first_seen.items()]
        stmt = dialect_insert(self.session, PROFILES).on_conflict_do_nothing(index_elements=["external_id"])
        table = PROFILES.c
        return dict((await self.session.execute(stmt.returning(table.external_id, table.id), rows)).all())

    async def client_events(self, profile_ids: Sequence[int], client_ids: Sequence[str]
                            ) -> list[tuple[int, str, int]]:
        table = EVENTS.c
        stmt = select(table.profile_id, table.client_id, table.id).where(
            among(self.session, table.profile_id, profile_ids), table.client_id.in_(client_ids))
        return [(pid, cid, eid) for pid, cid, eid in await self.session.execute(stmt)]

    async def insert_events(self, rows: Sequence[EventRow]) -> list[tuple[int, int, str | None]]:
        if arrays.is_postgresql(self.session):
            return await arrays.insert_events(self.session, rows)
        table = EVENTS.c
        values = [{"profile_id": r[0], "name": r[1], "properties": r[2], "occurred_at": r[3], "received_at": r[4],
                   "client_id": r[5]} for r in rows]
        stmt = dialect_insert(self.session, EVENTS).on_conflict_do_nothing(index_elements=["profile_id", "client_id"])
        result = await self.session.execute(stmt.returning(table.id, table.profile_id, table.client_id), values)
        return [(eid, pid, cid) for eid, pid, cid in result]


async def store_events(target: AsyncSession | EventWrites, events: Sequence[tuple[EventIn, datetime]]
                       ) -> tuple[list[tuple[int, int]], int]:
    """`record_events`, and how many events were stored (the others had been already). Unknown
    external ids get a bare profile each, created at the `now` of its first event. An event
    whose client `id` its profile has already (stored before, or earlier in `events`) is not
    stored again: its id is the stored event's. `target` is a session, or the statements of
    another client (within the caller's transaction either way)."""
    writes = SessionWrites(target) if isinstance(target, AsyncSession) else target
    first_seen: dict[str, datetime] = {}
    for data, now in events:
        first_seen.setdefault(data.external_id, now)
    ids = await _ensure_profiles(writes, first_seen)
    keys = [(ids[data.external_id], data.id) if data.id is not None else None for data, _ in events]
    known = await _client_events(writes, [key for key in keys if key is not None])
    fresh = []  # the events to insert: no client id, or the first time their client id is seen
    for index, key in enumerate(keys):
        if key is None or key not in known:
            fresh.append(index)
            if key is not None:
                known[key] = PENDING
    rows = [(ids[events[i][0].external_id], events[i][0].name, events[i][0].properties,
             events[i][0].occurred_at or events[i][1], events[i][1], events[i][0].id) for i in fresh]
    inserted = await _insert_events(writes, rows)
    plain = iter(event_id for event_id, key in inserted if key is None)
    known |= {key: event_id for event_id, key in inserted if key is not None}
    raced = [key for key, event_id in known.items() if event_id == PENDING]  # stored by another transaction since
    known |= await _client_events(writes, raced) if raced else {}
    return [(known[key] if key is not None else next(plain), ids[data.external_id])
            for key, (data, _) in zip(keys, events, strict=True)], len(inserted)


async def _client_events(writes: EventWrites, keys: Sequence[ClientKey]) -> dict[ClientKey, int]:
    if not keys:
        return {}
    found = await writes.client_events(sorted({profile_id for profile_id, _ in keys}), sorted({c for _, c in keys}))
    wanted = set(keys)
    return {(pid, cid): eid for pid, cid, eid in found if (pid, cid) in wanted}


async def _insert_events(writes: EventWrites, rows: Sequence[EventRow]) -> list[tuple[int, ClientKey | None]]:
    """Insert rows, in order, skipping a client id its profile has by now; (id, client key) of
    each stored row in id order (ids ascend in insertion order)."""
    if not rows:
        return []
    stored = await writes.insert_events(rows)
    return [(eid, (pid, cid) if cid is not None else None) for eid, pid, cid in sorted(stored)]


async def ensure_profiles(session: AsyncSession, first_seen: dict[str, datetime]) -> dict[str, int]:
    """Profile ids by external id, creating a bare profile, at its time, for each one not seen
    before (one created by another transaction meanwhile is read back, not duplicated)."""
    return await _ensure_profiles(SessionWrites(session), first_seen)


async def _ensure_profiles(writes: EventWrites, first_seen: dict[str, datetime]) -> dict[str, int]:
    ids = await writes.profile_ids(list(first_seen))
    missing = sorted(ext for ext in first_seen if ext not in ids)  # one order everywhere: no deadlock
    if missing:
        ids |= await writes.insert_bare_profiles({ext: first_seen[ext] for ext in missing})
    raced = [ext for ext in missing if ext not in ids]  # created by another transaction meanwhile
    if raced:
        ids |= await writes.profile_ids(raced)
    return ids


class ProfileWrites(Protocol):
    """The statements `upsert_profiles_in_order` runs: `SessionProfileWrites` (SQLAlchemy, either
    database) or `ingest_pg.PgProfileWrites` (a raw asyncpg connection)."""

    async def stored_profiles(self, external_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[StoredConsent]]:
        """The profiles' `id` and `_STATE_COLUMNS`, locked (FOR NO KEY UPDATE), by external id,
        and their consents."""

    async def insert_profiles(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Insert rows (`_STATE_COLUMNS`) unless their external id exists; the ids of those inserted."""

    async def update_profiles(self, rows: Sequence[dict[str, Any]]) -> None:
        """Set every column of each row (`id` and `_STATE_COLUMNS`) on the profile with its id."""

    async def write_consents(self, changes: Sequence[ConsentChange], now: datetime) -> None:
        """`set_consents(..., compared=True)`: upsert each change as it is."""


@dataclass(frozen=True)
class SessionProfileWrites:
    session: AsyncSession

    async def stored_profiles(self, external_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[StoredConsent]]:
        await _lock_on_sqlite(self.session, external_ids)
        table = PROFILES.c
        stmt = (select(table.id, *(table[name] for name in _STATE_COLUMNS))
                .where(among_external_ids(self.session, external_ids)).order_by(table.external_id)
                .with_for_update(key_share=True))  # FOR NO KEY UPDATE: events may still point at them
        profiles = [dict(row._mapping) for row in await self.session.execute(stmt)]
        if not profiles:
            return [], []
        consents = select(Consent.profile_id, Consent.channel, Consent.state, Consent.source, Consent.updated_at)
        rows = await self.session.execute(consents.where(among(self.session, Consent.profile_id,
                                                               [row["id"] for row in profiles])))
        return profiles, [(pid, channel, state, source, at) for pid, channel, state, source, at in rows]

    async def insert_profiles(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        table = PROFILES.c
        stmt = dialect_insert(self.session, PROFILES).on_conflict_do_nothing(index_elements=["external_id"])
        return dict((await self.session.execute(stmt.returning(table.external_id, table.id), rows)).all())

    async def update_profiles(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.session.execute(update(Profile), rows)

    async def write_consents(self, changes: Sequence[ConsentChange], now: datetime) -> None:
        await set_consents(self.session, changes, now, True)


async def upsert_profiles_in_order(target: AsyncSession | ProfileWrites, writes: Sequence[tuple[ProfileIn, datetime]],
                                   max_traits_bytes: int) -> list[StoredProfile | TraitsOverCap]:
    """Apply upserts (each with its own `now`) in order, exactly as `upsert_profile` would one
    request after another, in a few statements: rows locked once, merged in memory, written
    once. An upsert whose merged traits would pass `max_traits_bytes` is refused alone.
    `target` is a session, or the statements of another client (within the caller's transaction)."""
    db = SessionProfileWrites(target) if isinstance(target, AsyncSession) else target
    external_ids = sorted({data.external_id for data, _ in writes})
    stored = await _stored_states(db, external_ids)
    created: dict[str, int] = {}
    while True:
        outcomes, final = _apply_in_order(writes, stored, max_traits_bytes)
        new = {ext: values for ext, (values, _) in final.items() if ext not in stored and ext not in created}
        inserted = await db.insert_profiles([new[ext] for ext in sorted(new)]) if new else {}
        created |= inserted
        if len(inserted) == len(new):
            break
        # another transaction created some of them meanwhile: lock those and merge again (the
        # ones this call inserted stay created: inserting them again would answer them as updates)
        stored |= await _stored_states(db, [ext for ext in new if ext not in inserted])
    await _write_changes(db, stored, final, created, writes[-1][1])
    ids = created | {ext: pid for ext, (pid, _) in stored.items()}
    return [replace(o, profile_id=ids[data.external_id]) if isinstance(o, StoredProfile) else o
            for o, (data, _) in zip(outcomes, writes, strict=True)]


ConsentWrite = tuple[int | None, str, str, str, str, datetime]  # profile id (None: new), external id, channel, ...


class ProfilesRaced(Exception):
    """Another transaction created a profile this write meant to create, after it read them:
    what was written must be rolled back, and the writes tried again the long way."""


class ProfileWritesAtOnce(Protocol):
    """The statements `upsert_profiles_at_once` runs: `ingest_pg.PgProfileWrites`."""

    async def stored_profiles(self, external_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[StoredConsent]]:
        """As `ProfileWrites.stored_profiles`."""

    async def write_all(self, new: Sequence[dict[str, Any]], updates: Sequence[dict[str, Any]],
                        consents: Sequence[ConsentWrite]) -> dict[str, int]:
        """Insert `new` (unless their external id exists), update `updates`, upsert `consents`
        (a new profile's by its external id); the ids of the profiles inserted."""


async def upsert_profiles_at_once(db: ProfileWritesAtOnce, writes: Sequence[tuple[ProfileIn, datetime]],
                                  max_traits_bytes: int) -> list[StoredProfile | TraitsOverCap]:
    """`upsert_profiles_in_order` in two statements: the rows locked and read, then every
    change written by one `write_all`. Raises `ProfilesRaced` when another transaction created
    one of the new profiles meanwhile (the caller rolls back and takes `upsert_profiles_in_order`)."""
    stored = await _stored_states(db, sorted({data.external_id for data, _ in writes}))
    outcomes, final = _apply_in_order(writes, stored, max_traits_bytes)
    new = sorted(ext for ext in final if ext not in stored)
    updates = [{"id": pid, **final[ext][0]} for ext, (pid, (values, _)) in stored.items() if final[ext][0] != values]
    consents = [(stored[ext][0] if ext in stored else None, ext, channel, state, source, at)
                for ext, (_, states) in final.items() for channel, (state, source, at) in states.items()
                if ext not in stored or stored[ext][1][1].get(channel) != (state, source, at)]
    created = await db.write_all([final[ext][0] for ext in new], updates, consents)
    if len(created) != len(new):
        raise ProfilesRaced(f"{len(new) - len(created)} of {len(new)} new profiles were created meanwhile")
    ids = created | {ext: pid for ext, (pid, _) in stored.items()}
    return [replace(o, profile_id=ids[data.external_id]) if isinstance(o, StoredProfile) else o
            for o, (data, _) in zip(outcomes, writes, strict=True)]


async def _stored_states(db: ProfileWrites | ProfileWritesAtOnce, external_ids: Sequence[str]
                         ) -> dict[str, tuple[int, _State]]:
    rows, stored_consents = await db.stored_profiles(external_ids)
    profiles = {row["external_id"]: (row.pop("id"), row) for row in rows}
    consents: dict[int, _Consents] = {}
    for pid, channel, state, source, at in stored_consents:
        consents.setdefault(pid, {})[channel] = (state, source, at)
    return {ext: (pid, (values, consents.get(pid, {}))) for ext, (pid, values) in profiles.items()}


def _apply_in_order(writes: Sequence[tuple[ProfileIn, datetime]], stored: dict[str, tuple[int, _State]],
                    limit: int) -> tuple[list[StoredProfile | TraitsOverCap], dict[str, _State]]:
    states = {ext: state for ext, (_, state) in stored.items()}
    outcomes: list[StoredProfile | TraitsOverCap] = []
    for data, now in writes:
        current = states.get(data.external_id)
        values, consents = current or (_bare_profile(data.external_id, now), {})
        traits = {**values["traits"], **data.traits} if data.traits else values["traits"]
        if data.traits and (size := traits_size(traits)) > limit:
            outcomes.append(TraitsOverCap(size, limit))
            continue
        changed = {**values, **data.changes(), "traits": traits}
        if current is not None and any(changed[name] != values[name] for name in ("traits", *PROFILE_COLUMNS)):
            changed["updated_at"] = now
        consents = {**consents, **{channel.value: (c.state.value, c.source, now) for channel, c in data.consent.items()
                                   if consents.get(channel.value, ("",))[0] != c.state.value}}
        states[data.external_id] = (changed, consents)
        outcomes.append(StoredProfile(changed, consents, created=current is None))
    return outcomes, states


def _bare_profile(external_id: str, now: datetime) -> dict[str, Any]:
    """A profile as `ensure_profile` creates it."""
    return {"external_id": external_id, **dict.fromkeys(PROFILE_COLUMNS), "locale": "en", "time_zone": "UTC",
            "traits": {}, "created_at": now, "updated_at": now}


async def _write_changes(db: ProfileWrites, stored: dict[str, tuple[int, _State]], final: dict[str, _State],
                         created: dict[str, int], now: datetime) -> None:
    ids = created | {ext: pid for ext, (pid, _) in stored.items()}
    updates = [{"id": pid, **final[ext][0]} for ext, (pid, (values, _)) in stored.items() if final[ext][0] != values]
    if updates:
        await db.update_profiles(updates)
    changes = [ConsentChange(ids[ext], ChannelKind(channel), ConsentState(state), source, at)
               for ext, (_, consents) in final.items()
               for channel, (state, source, at) in consents.items()
               if ext in created or stored[ext][1][1].get(channel) != (state, source, at)]
    if changes:
        await db.write_consents(changes, now)
