"""Every write of a delivery's status, as SQL built once from the state machine
(`deliveries.states`): what each new state sets, and which rows may take it.

A chunk's outcomes are grouped by the state they lead to (sent through one provider, failed
for one reason, queued again for a retry); a typical chunk is one group. Each group is one
statement over the values that differ per row: on PostgreSQL an `UPDATE ... FROM unnest(ids,
values)` written by `batch_store_pg` (one plan, one execution, and HOT updates since no index
covers a changed column), on SQLite an executemany of `write_changes` here. Passing only the
columns that differ matters: asyncpg encodes each text array element at about 0.8 µs of client
CPU, more than the update itself costs the server.

Every statement carries the state machine's guard, so a row only ever takes a state it may
move to: a late write never moves a delivery back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ecrm.deliveries.states import DeliveryStatus, Reason, State, sql_guard


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class Change:
    delivery_id: int
    status: DeliveryStatus  # SENT, FAILED, UNKNOWN, SKIPPED, or QUEUED again for a retry
    reason: Reason | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    parts: int | None = None  # SMS segments, when sent on a channel that counts them

    @property
    def state(self) -> State:
        return self.status, self.reason


# One group: (state, provider) -> (delivery ids, the per-row value: message id if sent, else
# error, and the parts of each sent row: written only when one has any, `counts_parts`)
Groups = dict[tuple[State, str | None], tuple[list[int], list[str | None], list[int | None]]]


def group(changes: Sequence[Change]) -> Groups:
    groups: Groups = {}
    for change in changes:
        sent = change.status is DeliveryStatus.SENT
        key = (change.state, change.provider if sent else None)
        ids, values, parts = groups.setdefault(key, ([], [], []))
        ids.append(change.delivery_id)
        values.append(change.provider_message_id if sent else change.error)
        if sent:
            parts.append(change.parts)
    return groups


def counts_parts(parts: list[int | None]) -> bool:
    """Whether a group's rows carry parts (SMS); email's never do, and write no such column."""
    return any(part is not None for part in parts)


_TIMESTAMP = {DeliveryStatus.SENT: "sent_at", DeliveryStatus.DELIVERED: "delivered_at",
              DeliveryStatus.BOUNCED: "bounced_at", DeliveryStatus.FAILED: "failed_at",
              DeliveryStatus.UNKNOWN: "failed_at", DeliveryStatus.SKIPPED: "failed_at"}


def assignments(state: State, *, value: str, now: str, provider: str, parts: str = "") -> str:
    """The SET list that moves a row to `state`: `value` is the per-row message id (sent) or
    error text, `now` and `provider` the parameters, `parts` the per-row parts if any, each
    spelled as the calling store binds it."""
    status, reason = state
    reason_sql = f"'{reason}'" if reason is not None else "NULL"
    sets = [f"status = '{status}'", f"reason = {reason_sql}", "attempts = d.attempts + 1"]
    if status is DeliveryStatus.SENT:
        sets += [f"provider = {provider}", f"provider_message_id = {value}", "error = NULL"]
        if parts:
            sets.append(f"parts = {parts}")
    else:
        sets.append(f"error = {value}")
    if status in _TIMESTAMP:
        sets.append(f"{_TIMESTAMP[status]} = {now}")
    return ", ".join(sets)


def receipt_assignments(state: State, *, detail: str, now: str) -> str:
    """The SET list a provider's receipt writes (delivered, bounced...): the state, its time, and
    the provider's words when it gives any; the send's own columns stay as the send wrote them."""
    status, reason = state
    reason_sql = f"'{reason}'" if reason is not None else "NULL"
    sets = [f"status = '{status}'", f"reason = {reason_sql}", f"error = coalesce({detail}, d.error)"]
    if status in _TIMESTAMP:
        sets.append(f"{_TIMESTAMP[status]} = {now}")
    return ", ".join(sets)


def timed(state: State) -> bool:
    return state[0] in _TIMESTAMP


_BY_ID: dict[tuple[State, bool], TextClause] = {}


def _by_id(state: State, with_parts: bool) -> TextClause:
    """The SQLite statement for one row (executemany); SQLite names the target table `d` too."""
    statement = _BY_ID.get((state, with_parts))
    if statement is None:
        sets = assignments(state, value=":val", now=":now", provider=":provider", parts=":parts" if with_parts else "")
        statement = _BY_ID[state, with_parts] = text(
            f"UPDATE deliveries AS d SET {sets} WHERE d.id = :id AND {sql_guard(state)}")
    return statement


async def write_changes(connection: AsyncConnection, changes: Sequence[Change], now: datetime) -> None:
    """SQLAlchemy Core's write of a chunk's outcomes (the SQLite store's; PostgreSQL has its own)."""
    for (state, provider), (ids, values, parts) in group(changes).items():
        rows = [{"id": i, "val": v, "now": now, "provider": provider} for i, v in zip(ids, values, strict=True)]
        with_parts = counts_parts(parts)
        if with_parts:
            for row, count in zip(rows, parts, strict=True):
                row["parts"] = count
        await connection.execute(_by_id(state, with_parts), rows)
