"""Migration 0008 creates the orders table and its downgrade removes it, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.db import alembic_config, migrate
from tests.databases import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


def _downgrade_to_0007(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, "0007")


def _orders_indexes(connection: Connection) -> set[str] | None:
    inspector = inspect(connection)
    if "orders" not in inspector.get_table_names():
        return None
    # PostgreSQL also lists the unique constraint's own index, marked as such
    return {index["name"] or "" for index in inspector.get_indexes("orders") if "duplicates_constraint" not in index}


async def test_0008_creates_orders_and_its_downgrade_drops_them(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_orders_indexes) == {"ix_orders_profile_id_placed_at"}
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade_to_0007)
    async with engine.connect() as conn:
        assert await conn.run_sync(_orders_indexes) is None
    await migrate(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(_orders_indexes) == {"ix_orders_profile_id_placed_at"}
