"""Who owns a batch, and which of its deliveries are in flight.

A send job owns its batch by a number: taking a batch over increments `send_batches.attempt`,
and every later step of that job is conditional on the number being unchanged, so an older
attempt still running (arq retried the job after a timeout, a re-launch enqueued it again)
stops at its next step instead of sending alongside.

Before a chunk is handed to the provider, its delivery ids are written on the batch row
(`inflight_first`..`inflight_last`); recording the chunk's outcomes clears or advances them in
the same transaction. If a worker dies in between, the next owner finds the range and marks
what is still queued in it `unknown` (reason `interrupted`): it may have reached the provider,
and SMTP has no idempotency key, so resending could double it. On the dead sender's host its
journal (`deliveries.journal`) settles the chunk first, message by message, so that only what
was written to a connection and not yet answered is left in doubt. One small row update per chunk replaces a
`queued -> sending` update of every delivery row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ecrm.deliveries.models import DELIVERIES, SEND_BATCHES
from ecrm.deliveries.states import DeliveryStatus, Reason, State, sql_guard
from ecrm.deliveries.store import assignments

INTERRUPTED = ("interrupted while being handed to the provider; not resent, because it may have "
               "been delivered already")
IN_DOUBT: State = (DeliveryStatus.UNKNOWN, Reason.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class Owner:
    """One attempt at sending one batch."""

    send_id: int
    batch: int
    attempt: int


class SupersededError(Exception):
    """A newer attempt took this batch over; this one stops without sending more."""

    def __init__(self, owner: Owner) -> None:
        super().__init__(f"send {owner.send_id} batch {owner.batch}: attempt {owner.attempt} was taken over by a "
                         "newer one")


# Core statements built once: rebuilding one per call cost more client CPU than running it
# (`python -m bench.txn_overhead`).
B = SEND_BATCHES.c
_THE_BATCH = (B.send_id == bindparam("b_send")) & (B.batch == bindparam("b_batch"))
_TAKE_OVER = (update(SEND_BATCHES).where(_THE_BATCH).values(attempt=B.attempt + 1)
              .returning(B.attempt, B.inflight_first, B.inflight_last))
_MARK = (update(SEND_BATCHES).where(_THE_BATCH, B.attempt == bindparam("b_attempt"))
         .values(inflight_first=bindparam("b_first"), inflight_last=bindparam("b_last")))
IN_DOUBT_SQL = (f"UPDATE deliveries AS d SET {{sets}} WHERE d.send_id = {{send}} AND d.batch = {{batch}} "
                f"AND d.id BETWEEN {{first}} AND {{last}} AND {sql_guard(IN_DOUBT)}")
_IN_DOUBT = text(IN_DOUBT_SQL.format(
    sets=assignments(IN_DOUBT, value=":error", now=":now", provider="NULL"),
    send=":send", batch=":batch", first=":first", last=":last"))


async def take_over(connection: AsyncConnection, send_id: int, batch: int, now: datetime) -> Owner:
    """Become the batch's owner, and mark what a dead owner left in flight as in doubt."""
    attempt, first, last = (await connection.execute(_TAKE_OVER, {"b_send": send_id, "b_batch": batch})).one()
    if first is not None:
        await connection.execute(_IN_DOUBT, {"send": send_id, "batch": batch, "first": first, "last": last,
                                             "now": now, "error": INTERRUPTED})
    return Owner(send_id, batch, attempt)


async def still_owner(connection: AsyncConnection, owner: Owner, ids: tuple[int, int] | None) -> bool:
    """If `owner` still owns the batch, write the (first, last) delivery ids about to be sent,
    or clear them (None), and return True; return False if a newer attempt owns it."""
    first, last = ids if ids is not None else (None, None)
    result = await connection.execute(_MARK, {"b_send": owner.send_id, "b_batch": owner.batch,
                                              "b_attempt": owner.attempt, "b_first": first, "b_last": last})
    return bool(cast(CursorResult[Any], result).rowcount)


async def mark_in_flight(connection: AsyncConnection, owner: Owner, ids: tuple[int, int] | None) -> None:
    """`still_owner`, raising SupersededError if not."""
    if not await still_owner(connection, owner, ids):
        raise SupersededError(owner)


_ABANDONED = select(B.batch).where(B.send_id == bindparam("b_send"), B.inflight_first.is_not(None))
_IN_FLIGHT_QUEUED = (select(func.count()).select_from(DELIVERIES).join(
    SEND_BATCHES, (SEND_BATCHES.c.send_id == DELIVERIES.c.send_id) & (SEND_BATCHES.c.batch == DELIVERIES.c.batch))
    .where(DELIVERIES.c.send_id.in_(bindparam("b_sends", expanding=True)),
           DELIVERIES.c.status == DeliveryStatus.QUEUED,
           DELIVERIES.c.id.between(SEND_BATCHES.c.inflight_first, SEND_BATCHES.c.inflight_last)))


async def settle_abandoned(connection: AsyncConnection, send_id: int, now: datetime) -> int:
    """For a send nobody is sending any more (its launcher died): take over every batch that was
    left with a chunk in flight, mark that chunk in doubt and clear the mark, as the next send
    job would. Return how many batches had one."""
    batches = list(await connection.scalars(_ABANDONED, {"b_send": send_id}))
    for batch in batches:
        owner = await take_over(connection, send_id, batch, now)
        await still_owner(connection, owner, None)
    return len(batches)


async def count_in_flight(connection: AsyncConnection, send_ids: list[int]) -> int:
    """Deliveries still queued inside a chunk marked in flight: being handed over now, or, if the
    sender died, in doubt until the batch is taken over."""
    if not send_ids:
        return 0
    return int(await connection.scalar(_IN_FLIGHT_QUEUED, {"b_sends": send_ids}) or 0)
