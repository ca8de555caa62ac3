"""The worker takes its next job as soon as one of its own ends, not at its next poll."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import ArqRedis, func
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix

from ecrm.worker import PromptWorker
from tests.conftest import REDIS_URL

POLL = 5.0  # seconds: far longer than the test may take


async def short_job(ctx: dict[str, Any], name: str) -> str:
    await asyncio.sleep(0.05)
    return name


def one_slot_worker(poll_delay: float) -> PromptWorker:
    return PromptWorker(functions=[func(short_job, name="short_job")],
                        redis_settings=RedisSettings.from_dsn(REDIS_URL), max_jobs=1, poll_delay=poll_delay,
                        handle_signals=False)


async def test_a_freed_slot_takes_the_next_job_without_waiting_for_the_poll(redis: ArqRedis) -> None:
    first = await redis.enqueue_job("short_job", "first")
    second = await redis.enqueue_job("short_job", "second")
    assert first is not None and second is not None
    worker = one_slot_worker(POLL)
    running = asyncio.create_task(worker.main())
    try:
        async with asyncio.timeout(POLL / 2):
            assert await second.result(poll_delay=0.02) == "second"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
    ended, started = (await first.result_info()), (await second.result_info())
    assert ended is not None and started is not None
    assert (started.start_time - ended.finish_time).total_seconds() < 1.0


async def test_a_job_enqueued_while_idle_is_found_by_the_next_poll(redis: ArqRedis) -> None:
    worker = one_slot_worker(0.05)
    running = asyncio.create_task(worker.main())
    try:
        await asyncio.sleep(0.2)  # idle, pausing between polls
        job = await redis.enqueue_job("short_job", "late")
        assert job is not None
        async with asyncio.timeout(5):
            assert await job.result(poll_delay=0.02) == "late"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()


async def watches(redis: ArqRedis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_watch", {}).get("calls", 0))


async def test_a_poll_tries_only_jobs_nobody_runs_and_no_more_than_its_free_slots(redis: ArqRedis) -> None:
    for running in ("elsewhere-1", "elsewhere-2"):  # what another worker's running jobs look like
        await redis.set(in_progress_key_prefix + running, b"1")
    for name in ("next", "after"):
        assert await redis.enqueue_job("short_job", name, _job_id=name) is not None
    worker = PromptWorker(functions=[func(short_job, name="short_job")], redis_pool=redis, max_jobs=1,
                          handle_signals=False)
    before = await watches(redis)
    await worker.start_jobs([b"elsewhere-1", b"elsewhere-2", b"next", b"after"])
    assert await watches(redis) - before == 1  # arq's atomic check, for "next" only
    assert set(worker.tasks) == {"next"}
    await asyncio.gather(*worker.tasks.values())
