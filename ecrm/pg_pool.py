"""An asyncpg pool on the database a SQLAlchemy URL names, opened on first use: for the hot
paths that skip SQLAlchemy's execution layer on PostgreSQL (the send path's batch store, the
API's group-committed ingest)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

# For a connection (or a transaction: `shops.jobs`) whose every statement finds rows by a key
# (external id, id, profile and client id): index scans only. A pool opened on a new database (a
# fresh install, a benchmark) otherwise settles, after five executions of a statement, on a
# generic plan made while the tables were nearly empty, and keeps it until the next ANALYZE: a
# sequential scan of profiles comparing each row with the whole external id array cost
# PostgreSQL 33-39 ms per 100-event batch at 20,000 profiles instead of 4-5 (the reverted
# 58ac305's unexplained ~30 ms), and held the webhook mapper's lookups 0.5-0.9 s each at 40,000.
# `plan_cache_mode=force_custom_plan` fixes it too, but planning each execution cost ~1.5 ms more
# per events batch.
KEY_LOOKUPS = {"enable_seqscan": "off"}


def asyncpg_dsn(database_url: str) -> str:
    """The DSN asyncpg takes for the database a SQLAlchemy URL names."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class LazyPool:
    def __init__(self, database_url: str, max_size: int, **options: Any) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._max_size, self._options = max_size, options
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._max_size,
                                                       **self._options)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
