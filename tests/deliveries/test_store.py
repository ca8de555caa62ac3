"""Outcome writes: one chunk may mix every kind of outcome; each row gets exactly its own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.db import utcnow
from ecrm.deliveries.models import Delivery
from ecrm.deliveries.store import Change, write_changes
from ecrm.runtime import open_runtime
from ecrm.settings import Settings
from ecrm.types import DeliveryStatus
from ecrm.worker import in_process_queue
from tests.deliveries.test_send import planned_run
from tests.factories import add_profiles


async def test_a_chunk_of_mixed_outcomes_writes_each_row_its_own(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await add_profiles(sessions, 6, ("en",))
    runtime = open_runtime(settings, in_process_queue(settings))
    try:
        await planned_run(runtime)
    finally:
        await runtime.close()
    async with sessions() as session:
        ids = list(await session.scalars(select(Delivery.id).order_by(Delivery.id)))
    changes = [
        Change(ids[0], DeliveryStatus.SENT, "smtp", "<a@x>"),
        Change(ids[1], DeliveryStatus.FAILED, error="mailbox unknown"),
        Change(ids[2], DeliveryStatus.QUEUED, error="server busy"),
        Change(ids[3], DeliveryStatus.SENT, "other", "<b@x>"),
        Change(ids[4], DeliveryStatus.SENT, "smtp", "<c@x>"),
    ]  # ids[5] is not in the chunk
    async with engine.begin() as connection:
        await write_changes(connection, changes, utcnow())
    async with sessions() as session:
        rows = (await session.execute(select(
            Delivery.status, Delivery.provider, Delivery.provider_message_id, Delivery.error, Delivery.attempts,
            Delivery.sent_at.is_not(None), Delivery.failed_at.is_not(None)).order_by(Delivery.id))).all()
    assert [tuple(row) for row in rows] == [
        ("sent", "smtp", "<a@x>", None, 1, True, False),
        ("failed", None, None, "mailbox unknown", 1, False, True),
        ("queued", None, None, "server busy", 1, False, False),
        ("sent", "other", "<b@x>", None, 1, True, False),
        ("sent", "smtp", "<c@x>", None, 1, True, False),
        ("queued", None, None, None, 0, False, False),
    ]
