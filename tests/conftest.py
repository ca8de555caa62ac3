"""Fixtures: every database test runs on SQLite and on PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.db import create_engine, migrate, session_factory
from ecrm.settings import Settings, load_settings
from tests.smtp import SmtpServer

PG_ADMIN = os.environ.get("ECRM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ECRM_TEST_REDIS", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, migrated, empty database per test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        await _migrate(url)
        yield url
        return
    name = f"ecrm_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"
        await _migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings for one test: the test database, the repository's templates, no Redis."""
    return load_settings(Path("/nonexistent"), environ={}, database_url=db_url,
                         templates_dir=ROOT / "templates", secret_key="test-secret-key-0123456789")


@pytest.fixture
def clock() -> FrozenClock:
    """The time for one test: 2026-01-01 09:00 UTC until the test moves it."""
    return FrozenClock(T0)


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def send_settings(settings: Settings, smtp: SmtpServer) -> Settings:
    """Test settings pointing at the aiosmtpd server, with small batches and no retry wait."""
    return settings.model_copy(update={
        "smtp": settings.smtp.model_copy(update={"port": smtp.port, "connections": 4}),
        "send": settings.send.model_copy(update={"batch_size": 4, "retry_delay": 0.0, "max_tries": 5}),
        "public_url": "https://crm.shop.example",
    })


@pytest.fixture(scope="session")
def redis_turn() -> Iterator[None]:
    """Queue tests share one Redis database and flush it, and arq's keys name jobs, not test
    runs: two test runs on one machine take turns, the second waiting for the first."""
    with (Path(tempfile.gettempdir()) / "ecrm-tests-redis.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
async def redis(redis_turn: None) -> AsyncIterator[ArqRedis]:
    """The test Redis database, empty before and after the test."""
    pool = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    await pool.flushdb()
    yield pool
    await pool.flushdb()
    await pool.aclose()
