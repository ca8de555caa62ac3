"""The job queue seam: arq on Redis, or the same job functions run in this process.

Both take `enqueue(function, *args, _job_id=..., _defer_until=..., _defer_by=...)` like
`ArqRedis.enqueue_job`, so job code cannot tell them apart. Jobs raise `arq.Retry` to be run
again later. The in-process queue exists so the demo and `ecrm campaign launch` work on a
bare machine with no Redis; it waits for deferred jobs and retries on its `Clock`, so a test
with a `FrozenClock` runs them by moving the clock, not by waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from arq.worker import Retry

from ecrm.clock import SYSTEM_CLOCK, Clock

logger = logging.getLogger(__name__)

JobFunction = Callable[..., Awaitable[Any]]
# Transactional messages have their own arq queue, so one never waits behind a campaign's batches.
TRANSACTIONAL_QUEUE = "ecrm:transactional"


class JobQueue(Protocol):
    async def enqueue(self, function: str, *args: Any, _job_id: str | None = None,
                      _defer_until: datetime | None = None, _defer_by: float | None = None) -> bool: ...


# A job due now on the transactional queue is written by one script, one round trip instead of
# arq's three (WATCH, EXISTS, MULTI...EXEC), with the same effect: nothing if a job or a result
# with its id exists; else the job and its place in the queue. It also pushes a token on the
# queue's wake list (kept at one token), on which `WokenWorker` waits instead of polling.
_ENQUEUE_AND_WAKE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('LPUSH', KEYS[4], 1)
redis.call('LTRIM', KEYS[4], 0, 0)
return 1
"""


def wake_key(queue_name: str) -> str:
    """The list a `WokenWorker` of `queue_name` waits on."""
    return f"{queue_name}:wake"


class ArqQueue:
    def __init__(self, redis: ArqRedis, queue_name: str | None = None) -> None:
        self.redis, self.queue_name = redis, queue_name  # None: arq's default queue
        self._wake = redis.register_script(_ENQUEUE_AND_WAKE) if queue_name == TRANSACTIONAL_QUEUE else None

    async def enqueue(self, function: str, *args: Any, _job_id: str | None = None,
                      _defer_until: datetime | None = None, _defer_by: float | None = None) -> bool:
        if self._wake is not None and self.queue_name and _defer_until is None and not _defer_by:
            return await self._enqueue_and_wake(self.queue_name, function, args, _job_id or uuid4().hex)
        job = await self.redis.enqueue_job(function, *args, _job_id=_job_id, _defer_until=_defer_until,
                                           _defer_by=_defer_by, _queue_name=self.queue_name)
        return job is not None

    async def _enqueue_and_wake(self, queue_name: str, function: str, args: tuple[Any, ...], job_id: str) -> bool:
        assert self._wake is not None
        now = timestamp_ms()
        job = serialize_job(function, args, {}, None, now, serializer=self.redis.job_serializer)
        keys = [job_key_prefix + job_id, result_key_prefix + job_id, queue_name, wake_key(queue_name)]
        return bool(await self._wake(keys=keys, args=[self.redis.expires_extra_ms, job, job_id, now]))


class LazyArqQueue:
    """arq's queue `queue_name`, connected on the first job with one try (no waiting out arq's
    reconnection attempts): an API process starts, and answers, while Redis is down; a job
    enqueued then raises, and its caller decides what that means."""

    def __init__(self, redis_url: str, queue_name: str | None = None) -> None:
        self.redis_url, self.queue_name = redis_url, queue_name
        self._queue: ArqQueue | None = None
        self._connecting = asyncio.Lock()

    async def enqueue(self, function: str, *args: Any, _job_id: str | None = None,
                      _defer_until: datetime | None = None, _defer_by: float | None = None) -> bool:
        async with self._connecting:
            if self._queue is None:
                settings = dataclasses.replace(RedisSettings.from_dsn(self.redis_url), conn_retries=0)
                self._queue = ArqQueue(await create_pool(settings), self.queue_name)
        return await self._queue.enqueue(function, *args, _job_id=_job_id, _defer_until=_defer_until,
                                         _defer_by=_defer_by)

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.redis.aclose()


class InProcessQueue:
    """Runs jobs as asyncio tasks with arq's retry rules; `join()` waits until all are done."""

    def __init__(self, functions: Mapping[str, JobFunction], max_tries: int, concurrency: int = 2,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.functions = functions
        self.max_tries = max_tries
        self.clock = clock
        self.ctx: dict[str, Any] = {}
        self.failed: list[tuple[str, BaseException]] = []
        self._slots = asyncio.Semaphore(concurrency)
        self._ids: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue(self, function: str, *args: Any, _job_id: str | None = None,
                      _defer_until: datetime | None = None, _defer_by: float | None = None) -> bool:
        if function not in self.functions:
            raise KeyError(f"no job function named {function!r}")
        if _job_id is not None:
            if _job_id in self._ids:
                return False
            self._ids.add(_job_id)
        due = _defer_until or self.clock.now() + timedelta(seconds=_defer_by or 0.0)
        task = asyncio.create_task(self._run(function, args, _job_id or function, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def join(self) -> None:
        """Wait until every job is done. If the wait is cancelled (Ctrl-C, SIGTERM), the jobs are
        cancelled too and waited for, so each records what it handed over before this returns."""
        try:
            while self._tasks:
                await asyncio.gather(*list(self._tasks))
        except asyncio.CancelledError:  # gather has cancelled the jobs; let them record
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            raise

    async def _run(self, function: str, args: tuple[Any, ...], job_id: str, due: datetime) -> None:
        for job_try in range(1, self.max_tries + 1):
            await self.clock.sleep_until(due)
            try:
                async with self._slots:
                    await self.functions[function]({**self.ctx, "job_try": job_try, "job_id": job_id}, *args)
                break
            except Retry as retry:
                delay = retry.defer_score / 1000 if retry.defer_score else 0.0
                due = self.clock.now() + timedelta(seconds=delay)
                logger.info("↻ %s:%s retry %d in %.1fs", job_id, function, job_try, delay)
            except Exception as exc:
                logger.exception("! %s:%s failed", job_id, function)
                self.failed.append((job_id, exc))
                break
        self._ids.discard(job_id)
