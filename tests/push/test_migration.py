"""Migration 0010 creates push_subscriptions and its downgrade removes it, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.db import alembic_config, migrate
from tests.databases import fresh_database

PREVIOUS = "0009"  # the revision 0010 follows


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


def _downgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, PREVIOUS)


def _table(connection: Connection) -> tuple[set[str], list[str]] | None:
    inspector = inspect(connection)
    if "push_subscriptions" not in inspector.get_table_names():
        return None
    columns = {column["name"] for column in inspector.get_columns("push_subscriptions")}
    cascades = [fk["options"].get("ondelete", "") for fk in inspector.get_foreign_keys("push_subscriptions")]
    return columns, cascades


EXPECTED = ({"id", "profile_id", "endpoint", "p256dh", "auth", "user_agent", "created_at", "last_success_at",
             "invalid_at"}, ["CASCADE"])


async def test_0010_creates_push_subscriptions_and_its_downgrade_drops_them(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_table) == EXPECTED
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade)
    async with engine.connect() as conn:
        assert await conn.run_sync(_table) is None
    await migrate(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(_table) == EXPECTED
