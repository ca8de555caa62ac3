"""Write a chunk's outcomes in one go: one statement per kind of outcome in it.

A chunk's outcomes are grouped by kind (sent through one provider, failed, queued again for a
retry); a typical chunk is one group. Each group is one statement over the values that differ
per row: on PostgreSQL an `UPDATE ... FROM unnest(ids, values)` (one plan, one execution, and
HOT updates since no index covers a changed column), on SQLite an executemany. Passing only the
columns that differ matters: asyncpg encodes each text array element at about 0.8 µs of
client CPU, more than the update itself costs the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import TextClause, bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Update

from ecrm.deliveries.models import DELIVERIES
from ecrm.types import DeliveryStatus


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class Change:
    delivery_id: int
    status: DeliveryStatus  # SENT, FAILED, or QUEUED again for a retry
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None


# One group: (status, provider) -> (delivery ids, the per-row value: message id if sent, else error)
Groups = dict[tuple[DeliveryStatus, str | None], tuple[list[int], list[str | None]]]


def group(changes: Sequence[Change]) -> Groups:
    groups: Groups = {}
    for change in changes:
        sent = change.status is DeliveryStatus.SENT
        ids, values = groups.setdefault((change.status, change.provider if sent else None), ([], []))
        ids.append(change.delivery_id)
        values.append(change.provider_message_id if sent else change.error)
    return groups


async def write_changes(connection: AsyncConnection, changes: Sequence[Change], now: datetime) -> None:
    postgresql = connection.dialect.name == "postgresql"
    for (status, provider), (ids, values) in group(changes).items():
        if postgresql:
            await connection.execute(_UNNEST[status], {"now": now, "provider": provider, "ids": ids, "vals": values})
        else:
            rows = [{"b_id": i, "b_val": v, "b_now": now, "b_provider": provider}
                    for i, v in zip(ids, values, strict=True)]
            await connection.execute(_BY_ID[status], rows)


# What each kind of outcome sets, besides attempts + 1; v.val is the per-row value, {now} and
# {provider} the parameters (each store spells them its own way: `batch_store_pg` uses this too).
SET_BY_KIND = {
    DeliveryStatus.SENT: "status = 'sent', provider = {provider}, provider_message_id = v.val, error = NULL, "
                         "sent_at = {now}",
    DeliveryStatus.FAILED: "status = 'failed', error = v.val, failed_at = {now}",
    DeliveryStatus.QUEUED: "status = 'queued', error = v.val",
}
TIMED = tuple(kind for kind, assignments in SET_BY_KIND.items() if "{now}" in assignments)
_BOUND = {"now": ":now", "provider": ":provider"}
_UNNEST: dict[DeliveryStatus, TextClause] = {
    status: text(f"UPDATE deliveries AS d SET attempts = d.attempts + 1, {assignments.format(**_BOUND)} "
                 "FROM unnest(CAST(:ids AS bigint[]), CAST(:vals AS text[])) AS v(id, val) WHERE d.id = v.id")
    for status, assignments in SET_BY_KIND.items()
}

_ONE = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id")).values(attempts=DELIVERIES.c.attempts + 1)
_BY_ID: dict[DeliveryStatus, Update] = {
    DeliveryStatus.SENT: _ONE.values(status="sent", provider=bindparam("b_provider"),
                                     provider_message_id=bindparam("b_val"), error=None, sent_at=bindparam("b_now")),
    DeliveryStatus.FAILED: _ONE.values(status="failed", error=bindparam("b_val"), failed_at=bindparam("b_now")),
    DeliveryStatus.QUEUED: _ONE.values(status="queued", error=bindparam("b_val")),
}
