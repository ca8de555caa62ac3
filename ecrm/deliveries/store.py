"""Write a batch's outcomes in one go.

PostgreSQL gets one `UPDATE ... FROM unnest(arrays)` statement for the whole batch: one plan,
one execution, and (with no index on the changed columns) HOT updates that touch no index.
SQLite gets one executemany per kind of outcome, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ecrm.deliveries.models import DELIVERIES
from ecrm.types import DeliveryStatus


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class Change:
    delivery_id: int
    status: DeliveryStatus  # SENT, FAILED, or QUEUED again for a retry
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None


async def write_changes(connection: AsyncConnection, changes: Sequence[Change], now: datetime) -> None:
    if not changes:
        return
    if connection.dialect.name == "postgresql":
        await _write_postgresql(connection, changes, now)
    else:
        await _write_grouped(connection, changes, now)


_UNNEST = text("""
UPDATE deliveries AS d SET
    status = v.status,
    attempts = d.attempts + 1,
    provider = COALESCE(v.provider, d.provider),
    provider_message_id = COALESCE(v.ref, d.provider_message_id),
    error = v.error,
    sent_at = CASE WHEN v.status = 'sent' THEN :now ELSE d.sent_at END,
    failed_at = CASE WHEN v.status = 'failed' THEN :now ELSE d.failed_at END
FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:providers AS text[]),
            CAST(:refs AS text[]), CAST(:errors AS text[])) AS v(id, status, provider, ref, error)
WHERE d.id = v.id
""")


async def _write_postgresql(connection: AsyncConnection, changes: Sequence[Change], now: datetime) -> None:
    await connection.execute(_UNNEST, {
        "now": now,
        "ids": [c.delivery_id for c in changes],
        "statuses": [c.status.value for c in changes],
        "providers": [c.provider for c in changes],
        "refs": [c.provider_message_id for c in changes],
        "errors": [c.error for c in changes],
    })


_BY_ID = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id")).values(attempts=DELIVERIES.c.attempts + 1)
_GROUPED = {
    DeliveryStatus.SENT: _BY_ID.values(status="sent", sent_at=bindparam("b_now"),
                                       provider=bindparam("b_provider"), provider_message_id=bindparam("b_ref"),
                                       error=None),
    DeliveryStatus.FAILED: _BY_ID.values(status="failed", failed_at=bindparam("b_now"),
                                         error=bindparam("b_error")),
    DeliveryStatus.QUEUED: _BY_ID.values(status="queued", error=bindparam("b_error")),
}


async def _write_grouped(connection: AsyncConnection, changes: Sequence[Change], now: datetime) -> None:
    for status, statement in _GROUPED.items():
        rows: list[dict[str, Any]] = [
            {"b_id": c.delivery_id, "b_now": now, "b_provider": c.provider, "b_ref": c.provider_message_id,
             "b_error": c.error} for c in changes if c.status is status]
        if rows:
            await connection.execute(statement, rows)
