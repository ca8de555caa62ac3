"""Fixtures: every database test runs on SQLite and on PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.db import create_engine, session_factory
from ecrm.settings import Settings, load_settings
from tests.databases import PG_ADMIN, Migrated
from tests.smtp import SmtpServer

REDIS_URL = os.environ.get("TESTS_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Migrated]:
    """The session's migrated databases, to copy per test."""
    with Migrated(tmp_path_factory.mktemp("migrated"), PG_ADMIN) as databases:
        yield databases


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, migrated: Migrated) -> AsyncIterator[str]:
    """A new, migrated, empty database per test: a copy of the session's migrated SQLite file,
    or a new PostgreSQL database from the session's migrated template."""
    if request.param == "sqlite":
        yield migrated.sqlite(tmp_path / "test.db")
        return
    async with migrated.postgresql() as url:
        yield url


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


@pytest.fixture
def redis_turn() -> Iterator[None]:
    """Queue tests share one Redis database and flush it, and arq's keys name jobs, not test
    runs: two test runs on one machine (two checkouts) take turns, test by test. The variables
    naming the services start with TESTS_, not ECRM_, which ecrm's own settings would reject."""
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
