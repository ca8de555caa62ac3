"""The mapping's claim on PostgreSQL reads the webhooks still `received` from their partial index
(migration 0019), not by walking the primary key through every mapped row kept for redeliveries;
and it claims the oldest received ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.shops.jobs import _claimable
from ecrm.shops.models import ReceivedWebhook, WebhookStatus

MAPPED, RECEIVED = 100_000, 50
_ROWS = text("INSERT INTO received_webhooks (provider, delivery_id, topic, shop, body, status, attempts, received_at) "
             "SELECT 'shopify', 'd' || n, 'orders/create', 'shop', CASE WHEN n > :mapped THEN '{}' END, "
             "CASE WHEN n > :mapped THEN 'received' ELSE 'mapped' END, 1, :at FROM generate_series(1, :total) AS n")


async def test_the_claim_reads_the_received_rows_from_their_index(engine: AsyncEngine,
                                                                 sessions: async_sessionmaker[AsyncSession]) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    async with sessions.begin() as session:
        await session.execute(_ROWS, {"mapped": MAPPED, "total": MAPPED + RECEIVED, "at": datetime.now(UTC)})
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE received_webhooks"))
        wanted = (_claimable().where(ReceivedWebhook.status == WebhookStatus.RECEIVED.value).limit(200)
                  .with_for_update(skip_locked=True))
        sql = str(wanted.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        plan = "\n".join(row[0] for row in await connection.execute(text(f"EXPLAIN {sql}")))
        claimed = [row[0] for row in await connection.execute(text(sql))]
    assert "ix_received_webhooks_received" in plan, plan
    assert len(claimed) == RECEIVED and claimed == sorted(claimed) and min(claimed) > MAPPED
