"""Batch bookkeeping: which batches of a run are still open; a run is done when none is.

Closing a batch and checking the run happen under the run's row lock (PostgreSQL) or the
database write lock (SQLite), taken by the transaction's first statement, so two batches
finishing at the same moment cannot both miss that they were the last.
"""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.models import CampaignRun
from ecrm.db import insert_ignoring_conflicts, utcnow
from ecrm.deliveries.models import Delivery, RunBatch
from ecrm.types import RunStatus

OPEN = ("queued", "sending")


async def open_batches(session: AsyncSession, run_id: int, count: int) -> None:
    """Make batches 0..count-1 of the run open (a re-launch reopens every batch)."""
    if count == 0:
        return
    dialect = session.get_bind().dialect.name
    rows = [{"run_id": run_id, "batch": number, "done_at": None} for number in range(count)]
    await session.execute(insert_ignoring_conflicts(RunBatch.__table__, dialect), rows)
    await session.execute(update(RunBatch).where(RunBatch.run_id == run_id).values(done_at=None))


async def close_batch(sessions: async_sessionmaker[AsyncSession], run_id: int, batch: int | None) -> bool:
    """Close `batch` if none of its deliveries is open; mark the run done if it was the last."""
    now = utcnow()
    async with sessions.begin() as session:
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id)
                              .values(finished_at=CampaignRun.finished_at))  # the lock, see module doc
        if batch is not None:
            still_open = exists().where(Delivery.run_id == run_id, Delivery.batch == batch, Delivery.status.in_(OPEN))
            await session.execute(update(RunBatch).where(RunBatch.run_id == run_id, RunBatch.batch == batch,
                                                         RunBatch.done_at.is_(None), ~still_open).values(done_at=now))
        remaining = await session.scalar(select(RunBatch.batch).where(
            RunBatch.run_id == run_id, RunBatch.done_at.is_(None)).limit(1))
        if remaining is not None:
            return False
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id)
                              .values(status=RunStatus.DONE, finished_at=now))
    return True
