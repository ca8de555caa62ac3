"""The mapping's claim on PostgreSQL reads the webhooks still `received` from their partial index
(migration 0019), in id order, not by walking the primary key through every mapped row kept for
redeliveries nor by sorting every received row; and it claims the oldest received ones."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import ClauseElement, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler

from ecrm.pg_pool import asyncpg_dsn
from ecrm.shops.jobs import BATCH, MAPPING_PLANS, claim_statement, oldest_received

MAPPED, RECEIVED = 100_000, 1_000
_ROWS = text("INSERT INTO received_webhooks (provider, delivery_id, topic, shop, body, status, attempts, received_at) "
             "SELECT 'shopify', 'd' || n, 'orders/create', 'shop', CASE WHEN n > :mapped THEN '{}' END, "
             "CASE WHEN n > :mapped THEN 'received' ELSE 'mapped' END, 1, :at FROM generate_series(1, :total) AS n")


def _sql_values(values: list[object]) -> str:
    quoted = [str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'" for v in values]
    return f"({', '.join(quoted)})" if quoted else ""


@pytest.mark.parametrize("analyzed", [False, True])
async def test_the_claim_reads_the_oldest_received_rows_from_their_index_in_order(
        engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], db_url: str, analyzed: bool) -> None:
    """As the mapping runs it: the statement as sent, in a mapping transaction's settings, with the
    plan a connection caches; on a table never analyzed too (its planner guesses a few rows)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    async with sessions.begin() as session:
        await session.execute(_ROWS, {"mapped": MAPPED, "total": MAPPED + RECEIVED, "at": datetime.now(UTC)})
    statement = claim_statement("postgresql", oldest_received(BATCH))
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)
    connection = await asyncpg.connect(asyncpg_dsn(db_url), server_settings={
        **MAPPING_PLANS, "plan_cache_mode": "force_generic_plan"})
    try:
        if analyzed:
            await connection.execute("ANALYZE received_webhooks")
        arguments = [compiled.params[name] for name in compiled.positiontup or []]
        await connection.execute(f"PREPARE claim AS {compiled.string}")  # as asyncpg does, its plan cached
        plan = "\n".join(row[0] for row in await connection.fetch(
            f"EXPLAIN (COSTS OFF) EXECUTE claim{_sql_values(arguments)}"))
        async with connection.transaction():
            claimed = [row[0] for row in await connection.fetch(compiled.string, *arguments)]
    finally:
        await connection.close()
    assert "Index Scan using ix_received_webhooks_received" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan, plan
    assert claimed == list(range(MAPPED + 1, MAPPED + BATCH + 1))
