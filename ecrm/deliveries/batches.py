"""Batch bookkeeping: which batches of a send are still open. A send is done when its planning
has finished and no batch is open.

Closing a batch and checking the send happen under the send's row lock (PostgreSQL) or the
database write lock (SQLite), taken by the transaction's first statement, so two batches
finishing at the same moment cannot both miss that they were the last.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.deliveries.models import DELIVERIES, SEND_BATCHES, SENDS

S, B, D = SENDS.c, SEND_BATCHES.c, DELIVERIES.c
# Core statements built once (see deliveries.claims): one batch closes per 1,000 messages.
_LOCK_SEND = update(SENDS).where(S.id == bindparam("b_send")).values(done_at=S.done_at)
_STILL_OPEN = exists().where(D.send_id == bindparam("b_send"), D.batch == bindparam("b_batch"), D.status == "queued")
_CLOSE = update(SEND_BATCHES).where(B.send_id == bindparam("b_send"), B.batch == bindparam("b_batch"),
                                    B.done_at.is_(None), ~_STILL_OPEN).values(done_at=bindparam("b_now"))
_SEND_STATE = (select(S.planned_at, exists().where(B.send_id == S.id, B.done_at.is_(None)))
               .where(S.id == bindparam("b_send")))  # planned? any batch still open?
_DONE = update(SENDS).where(S.id == bindparam("b_send")).values(done_at=bindparam("b_now"))


async def close_batch(engine: AsyncEngine, send_id: int, batch: int | None, now: datetime) -> bool:
    """Close `batch` if none of its deliveries is queued; mark the send done if it was the last."""
    params = {"b_send": send_id, "b_batch": batch, "b_now": now}
    async with engine.begin() as connection:
        await connection.execute(_LOCK_SEND, params)  # the lock, see module doc
        if batch is not None:
            await connection.execute(_CLOSE, params)
        planned, open_batches = (await connection.execute(_SEND_STATE, params)).one()
        if planned is None or open_batches:
            return False
        await connection.execute(_DONE, params)
    return True
