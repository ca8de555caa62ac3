"""GET /health reports whether the database answers."""

from __future__ import annotations

from pathlib import Path

from pytest_aiohttp import AiohttpClient

from ecrm.api.app import create_app
from ecrm.settings import load_settings
from tests.api.conftest import Client


async def test_health_answers_200_when_the_database_answers(api: Client) -> None:
    resp = await api.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "database": "ok"}


async def test_health_answers_503_when_the_database_is_down(aiohttp_client: AiohttpClient) -> None:
    settings = load_settings(Path("/nonexistent"), environ={},
                             database_url="postgresql+asyncpg://postgres@127.0.0.1:9/ecrm")
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["database"] == "unreachable"
