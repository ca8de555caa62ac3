"""The session's migrated databases: copies are at the newest revision, a killed run's leftovers
are dropped, a running session's are not, and nothing is left behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ecrm.db import alembic_config, connect
from tests.databases import LOCKS, PG_ADMIN, Migrated


async def _names(admin: asyncpg.Connection, pattern: str) -> set[str]:
    return {row["datname"] for row in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                                        pattern)}


async def _revision(url: str) -> str:
    async with connect(url) as engine, engine.connect() as conn:
        return str((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one())


async def test_a_killed_sessions_databases_are_dropped_a_live_ones_kept_and_a_closed_ones_gone(
        tmp_path: Path) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    admin = await asyncpg.connect(PG_ADMIN)
    live = await asyncpg.connect(PG_ADMIN)
    try:
        killed, running = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
        dead = {f"ecrm_tpl_{killed}", f"ecrm_test_{killed}_3"}
        alive = {f"ecrm_tpl_{running}", f"ecrm_test_{running}_0"}
        await live.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCKS, running)
        for name in dead | alive:
            await admin.execute(f'CREATE DATABASE "{name}"')

        with Migrated(tmp_path) as migrated:
            assert await _revision(migrated.sqlite(tmp_path / "copy.db")) == head
            async with migrated.postgresql() as url:
                assert await _revision(url) == head
                names = await _names(admin, "ecrm_%")
                assert not names & dead
                assert alive <= names
                assert migrated.template in names
            allowed = await admin.fetchval("SELECT datallowconn FROM pg_database WHERE datname = $1",
                                           migrated.template)
            assert allowed is False
        assert await _names(admin, f"%{migrated.token}%") == set()
        assert alive <= await _names(admin, "ecrm_%")
    finally:
        for name in dead | alive:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await live.close()
        await admin.close()
