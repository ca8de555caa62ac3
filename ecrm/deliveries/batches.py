"""Batch bookkeeping: which batches of a run are still open. A run is done when its planning
has finished and no batch is open.

Closing a batch and checking the run happen under the run's row lock (PostgreSQL) or the
database write lock (SQLite), taken by the transaction's first statement, so two batches
finishing at the same moment cannot both miss that they were the last.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ecrm.campaigns.models import CampaignRun
from ecrm.db import utcnow
from ecrm.deliveries.models import DELIVERIES, RUN_BATCHES, RunBatch
from ecrm.types import RunStatus


async def reopen_batches(session: AsyncSession, run_id: int) -> int:
    """Reopen every batch a run already has (a re-launch resends what is still queued in them);
    return how many there are."""
    result = await session.execute(update(RunBatch).where(RunBatch.run_id == run_id).values(done_at=None))
    return int(cast(CursorResult[Any], result).rowcount or 0)


RUNS = cast(Table, CampaignRun.__table__)
R, B, D = RUNS.c, RUN_BATCHES.c, DELIVERIES.c
# Core statements built once (see deliveries.claims): one batch closes per 1,000 messages.
_LOCK_RUN = update(RUNS).where(R.id == bindparam("b_run")).values(finished_at=R.finished_at)
_STILL_OPEN = exists().where(D.run_id == bindparam("b_run"), D.batch == bindparam("b_batch"), D.status == "queued")
_CLOSE = update(RUN_BATCHES).where(B.run_id == bindparam("b_run"), B.batch == bindparam("b_batch"), B.done_at.is_(None),
                               ~_STILL_OPEN).values(done_at=bindparam("b_now"))
_RUN_STATE = (select(R.planned_at, exists().where(B.run_id == R.id, B.done_at.is_(None)))
              .where(R.id == bindparam("b_run")))  # planned? any batch still open?
_DONE = update(RUNS).where(R.id == bindparam("b_run")).values(status=RunStatus.DONE, finished_at=bindparam("b_now"))


async def close_batch(engine: AsyncEngine, run_id: int, batch: int | None) -> bool:
    """Close `batch` if none of its deliveries is open; mark the run done if it was the last."""
    params = {"b_run": run_id, "b_batch": batch, "b_now": utcnow()}
    async with engine.begin() as connection:
        await connection.execute(_LOCK_RUN, params)  # the lock, see module doc
        if batch is not None:
            await connection.execute(_CLOSE, params)
        planned, open_batches = (await connection.execute(_RUN_STATE, params)).one()
        if planned is None or open_batches:
            return False
        await connection.execute(_DONE, params)
    return True
