"""Batch bookkeeping: which batches of a run are still open. A run is done when its planning
has finished and no batch is open.

Closing a batch and checking the run happen under the run's row lock (PostgreSQL) or the
database write lock (SQLite), taken by the transaction's first statement, so two batches
finishing at the same moment cannot both miss that they were the last.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.models import CampaignRun
from ecrm.db import utcnow
from ecrm.deliveries.models import Delivery, RunBatch
from ecrm.types import RunStatus


async def reopen_batches(session: AsyncSession, run_id: int) -> int:
    """Reopen every batch a run already has (a re-launch resends what is still queued in them);
    return how many there are."""
    result = await session.execute(update(RunBatch).where(RunBatch.run_id == run_id).values(done_at=None))
    return int(cast(CursorResult[Any], result).rowcount or 0)


async def close_batch(sessions: async_sessionmaker[AsyncSession], run_id: int, batch: int | None) -> bool:
    """Close `batch` if none of its deliveries is open; mark the run done if it was the last."""
    now = utcnow()
    async with sessions.begin() as session:
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id)
                              .values(finished_at=CampaignRun.finished_at))  # the lock, see module doc
        if batch is not None:
            still_open = exists().where(Delivery.run_id == run_id, Delivery.batch == batch, Delivery.status == "queued")
            await session.execute(update(RunBatch).where(RunBatch.run_id == run_id, RunBatch.batch == batch,
                                                         RunBatch.done_at.is_(None), ~still_open).values(done_at=now))
        planned = await session.scalar(select(CampaignRun.planned_at).where(CampaignRun.id == run_id))
        remaining = await session.scalar(select(RunBatch.batch).where(
            RunBatch.run_id == run_id, RunBatch.done_at.is_(None)).limit(1))
        if planned is None or remaining is not None:
            return False
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id)
                              .values(status=RunStatus.DONE, finished_at=now))
    return True
