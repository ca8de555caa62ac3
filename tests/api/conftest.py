"""Fixtures for the HTTP API: a test client over `create_app(settings, clock)`, on the test's
FrozenClock, and a live API key."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.apikeys import create_api_key
from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.settings import Settings

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock) -> Client:
    return await aiohttp_client(create_app(settings, clock))


@pytest.fixture
async def api_key(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> str:
    async with sessions.begin() as session:
        return await create_api_key(session, "tests", clock.now())


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}
