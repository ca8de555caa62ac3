"""`BatchStore` on a raw asyncpg pool: PostgreSQL's send path without SQLAlchemy's execution
layer. The statements are those of `batch_store_sql` (`deliveries.claims`, `.store`, `.batches`,
`.queued`), written out in SQL, with the status writes built by the same `deliveries.store`
functions from the state machine; the tests run both stores against the same contract.

Ids go as binary bigint[] parameters. Array literals (`'{1,2}'::text::bigint[]`) cost the
client less, but PostgreSQL may parse the literal again for every row a plan rechecks (a
bitmap scan does): at 20,000 recipients the plan's insert went from 20 µs to a millisecond per row."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from ecrm import jsontext
from ecrm.clock import Clock
from ecrm.deliveries.batch_store import ERASED, GONE, Span, Started, span
from ecrm.deliveries.claims import IN_DOUBT, IN_DOUBT_SQL, INTERRUPTED, Owner
from ecrm.deliveries.queued import split_erased
from ecrm.deliveries.sends import SendRef
from ecrm.deliveries.states import DeliveryStatus, State, sql_guard
from ecrm.deliveries.store import Change, assignments, counts_parts, group, timed
from ecrm.pg_pool import LazyPool
from ecrm.push.targets import PG_TARGETS, attach
from ecrm.types import ChannelKind, SendSource

POOL_SIZE = 8  # a worker runs a few send jobs and a plan at once, each holding a connection briefly

_QUEUE = """INSERT INTO deliveries (send_id, batch, profile_id, channel, variant, status, attempts, queued_at)
SELECT $1, $2, p.id, $3, 'default', 'queued', 0, $4 FROM profiles AS p WHERE p.id = ANY($5::bigint[])
ON CONFLICT DO NOTHING"""
_OPEN = "INSERT INTO send_batches (send_id, batch, attempt) VALUES ($1, $2, 0)"
_TAKE_OVER = """UPDATE send_batches SET attempt = attempt + 1 WHERE send_id = $1 AND batch = $2
RETURNING attempt, inflight_first, inflight_last"""
_IN_DOUBT = IN_DOUBT_SQL.format(sets=assignments(IN_DOUBT, value="$4", now="$3", provider="NULL"),
                                send="$1", batch="$2", first="$5", last="$6")
_READ = """SELECT d.id, p.id, p.external_id, p.email, p.phone, p.first_name, p.last_name, p.locale, p.time_zone,
       p.traits
FROM deliveries AS d LEFT OUTER JOIN profiles AS p ON d.profile_id = p.id
WHERE d.send_id = $1 AND d.batch = $2 AND d.status = 'queued' ORDER BY d.id"""
_MARK = """UPDATE send_batches SET inflight_first = $4, inflight_last = $5
WHERE send_id = $1 AND batch = $2 AND attempt = $3"""
_LOCK_SEND = "UPDATE sends SET done_at = done_at WHERE id = $1"
_CLOSE = """UPDATE send_batches AS b SET done_at = $3 WHERE b.send_id = $1 AND b.batch = $2 AND b.done_at IS NULL
AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.send_id = $1 AND d.batch = $2 AND d.status = 'queued')"""
_SEND_STATE = """SELECT s.planned_at IS NOT NULL,
       EXISTS (SELECT 1 FROM send_batches AS b WHERE b.send_id = s.id AND b.done_at IS NULL)
FROM sends AS s WHERE s.id = $1"""
_DONE = "UPDATE sends SET done_at = $2 WHERE id = $1"
_SEND = "SELECT source_kind, source_id, channel, template, label, data FROM sends WHERE id = $1"


class PgBatchStore:
    def __init__(self, database_url: str, clock: Clock) -> None:
        self.clock = clock
        self._pool = LazyPool(database_url, POOL_SIZE, init=_codecs)

    async def pool(self) -> asyncpg.Pool:
        return await self._pool.get()

    async def send(self, send_id: int) -> SendRef:
        async with (await self.pool()).acquire() as connection:
            row = await connection.fetchrow(_SEND, send_id)
        if row is None:
            raise LookupError(f"no send {send_id}")
        return SendRef(send_id, SendSource(row["source_kind"]), row["source_id"], ChannelKind(row["channel"]),
                       row["template"], row["label"], row["data"])

    async def queue_members(self, send_id: int, batch: int, profile_ids: Sequence[int], channel: str) -> int:
        async with (await self.pool()).acquire() as connection, connection.transaction():
            status = await connection.execute(_QUEUE, send_id, batch, channel, self.clock.now(), list(profile_ids))
            queued = int(status.rsplit(" ", 1)[1])
            if queued:
                await connection.execute(_OPEN, send_id, batch)
        return queued

    async def start(self, send_id: int, batch: int, first_chunk: int, channel: str = "email") -> Started:
        async with (await self.pool()).acquire() as connection, connection.transaction():
            attempt, first, last = await connection.fetchrow(_TAKE_OVER, send_id, batch)
            owner = Owner(send_id, batch, attempt)
            if first is not None:
                await connection.execute(_IN_DOUBT, send_id, batch, self.clock.now(), INTERRUPTED, first, last)
            recipients, erased = split_erased(await connection.fetch(_READ, send_id, batch))
            if channel == ChannelKind.PUSH:
                attach(recipients, await connection.fetch(PG_TARGETS, sorted({r.profile_id for r in recipients})))
            mark = _mark(owner, span(recipients[:first_chunk]))
            if erased:  # skipped, and the mark written, in one statement
                await connection.fetchval(_record_statement(((GONE, False),)), *mark, self.clock.now(),
                                          erased, [ERASED] * len(erased))
            else:
                await connection.execute(_MARK, *mark)
        return Started(owner, recipients, len(erased))

    async def record(self, owner: Owner, changes: Sequence[Change], following: Span | None) -> bool:
        """One autocommit statement: every group's UPDATE and the in-flight mark, as CTEs."""
        groups = group(changes)
        shapes = tuple((state, counts_parts(parts)) for (state, _), (_, _, parts) in groups.items())
        now = [self.clock.now()] if any(timed(state) for state, _ in shapes) else []
        arguments: list[object] = [*_mark(owner, following), *now]
        for ((state, provider), (ids, values, parts)), (_, with_parts) in zip(groups.items(), shapes, strict=True):
            arguments += [ids, values] + ([provider] if state[0] is DeliveryStatus.SENT else [])
            if with_parts:
                arguments.append(parts)
        statement = _record_statement(shapes)
        async with (await self.pool()).acquire() as connection:
            return bool(await connection.fetchval(statement, *arguments))

    async def close(self, send_id: int, batch: int | None) -> bool:
        async with (await self.pool()).acquire() as connection, connection.transaction():
            now = self.clock.now()
            await connection.execute(_LOCK_SEND, send_id)  # the lock, see deliveries.batches
            if batch is not None:
                await connection.execute(_CLOSE, send_id, batch, now)
            planned, open_batches = await connection.fetchrow(_SEND_STATE, send_id)
            if not planned or open_batches:
                return False
            await connection.execute(_DONE, send_id, now)
        return True

    async def warm(self) -> None:
        await self.pool()

    async def aclose(self) -> None:
        await self._pool.close()


def _mark(owner: Owner, chunk: Span | None) -> tuple[int, int, int, int | None, int | None]:
    first, last = chunk if chunk is not None else (None, None)
    return owner.send_id, owner.batch, owner.attempt, first, last


_STATEMENTS: dict[tuple[tuple[State, bool], ...], str] = {}


def _record_statement(shapes: tuple[tuple[State, bool], ...]) -> str:
    """`$1..$5` the mark (send, batch, attempt, first, last); then `now` if a state sets a
    timestamp; then per group of outcomes (its state, and whether it carries SMS parts) its ids,
    values and, if sent, provider, then its parts if it carries them. The statement
    returns 1 if the mark was written (the attempt still owns the batch), else 0. Built once per
    sequence of states. (PostgreSQL refuses a parameter no expression types, hence no unused
    `now`.)"""
    statement = _STATEMENTS.get(shapes)
    if statement is None:
        ctes, number = [], 6
        now = f"${number}" if any(timed(state) for state, _ in shapes) else ""
        number += bool(now)
        for index, (state, with_parts) in enumerate(shapes):
            provider = f"${number + 2}" if state[0] is DeliveryStatus.SENT else ""
            parts = f"${number + 2 + bool(provider)}" if with_parts else ""
            sets = assignments(state, value="v.val", now=now, provider=provider, parts="v.parts" if parts else "")
            arrays = f"${number}::bigint[], ${number + 1}::text[]" + (f", {parts}::smallint[]" if parts else "")
            ctes.append(f"g{index} AS (UPDATE deliveries AS d SET {sets} "
                        f"FROM unnest({arrays}) AS v(id, val{', parts' if parts else ''}) "
                        f"WHERE d.id = v.id AND {sql_guard(state)})")
            number += 2 + bool(provider) + bool(parts)
        ctes.append("m AS (UPDATE send_batches SET inflight_first = $4, inflight_last = $5 "
                    "WHERE send_id = $1 AND batch = $2 AND attempt = $3 RETURNING 1)")
        statement = _STATEMENTS[shapes] = f"WITH {', '.join(ctes)} SELECT count(*) FROM m"
    return statement


async def _codecs(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=jsontext.loads, schema="pg_catalog")
    await connection.set_type_codec("json", encoder=json.dumps, decoder=jsontext.loads, schema="pg_catalog")
