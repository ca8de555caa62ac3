"""GET /health: ready only when the database answers and carries this version's schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from ecrm.api.app import create_app
from ecrm.api.health import schema_head
from ecrm.db import create_engine, migrate
from ecrm.settings import load_settings
from tests.api.conftest import Client
from tests.databases import PG_ADMIN


async def test_health_answers_200_with_the_schema_and_pid_when_ready(api: Client) -> None:
    resp = await api.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "database": "ok", "schema": schema_head(), "pid": os.getpid()}


async def test_health_answers_503_when_the_database_is_down(aiohttp_client: AiohttpClient) -> None:
    settings = load_settings(Path("/nonexistent"), environ={},
                             database_url="postgresql+asyncpg://postgres@127.0.0.1:9/ecrm")
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert (body["status"], body["database"]) == ("not ready", "unreachable")


@pytest.fixture(params=["sqlite", "postgresql"])
async def bare_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database that nobody has migrated."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}"
        return
    name = f"ecrm_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _health(aiohttp_client: AiohttpClient, url: str) -> tuple[int, dict[str, object]]:
    client = await aiohttp_client(create_app(load_settings(Path("/nonexistent"), environ={}, database_url=url)))
    resp = await client.get("/health")
    return resp.status, await resp.json()


async def test_health_is_not_ready_on_a_database_never_migrated(aiohttp_client: AiohttpClient,
                                                                bare_db_url: str) -> None:
    status, body = await _health(aiohttp_client, bare_db_url)
    assert status == 503
    assert body["status"] == "not ready"
    assert body["schema"] is None
    assert "ecrm init" in str(body["reason"])


async def test_health_is_not_ready_on_a_database_at_an_older_schema(aiohttp_client: AiohttpClient,
                                                                    bare_db_url: str) -> None:
    engine = create_engine(bare_db_url)
    try:
        await migrate(engine, "0005")
    finally:
        await engine.dispose()
    status, body = await _health(aiohttp_client, bare_db_url)
    assert status == 503
    assert (body["status"], body["database"], body["schema"]) == ("not ready", "ok", "0005")
    assert f"needs {schema_head()}" in str(body["reason"])
    engine = create_engine(bare_db_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    status, body = await _health(aiohttp_client, bare_db_url)
    assert (status, body["schema"]) == (200, schema_head())
