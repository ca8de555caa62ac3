"""The transactional queue on Redis: a job due now is written in one script that also wakes
the worker (`WokenWorker` waits on the wake list instead of sleeping between polls), with arq's
own semantics: one job per id, run by arq's worker with arq's record of it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from arq import ArqRedis, func
from arq.connections import RedisSettings
from arq.jobs import Job, JobStatus

from ecrm import worker
from ecrm.queue import TRANSACTIONAL_QUEUE, ArqQueue, wake_key
from ecrm.worker import WokenWorker
from tests.conftest import REDIS_URL


async def echo(ctx: dict[str, Any], value: str) -> str:
    return value


def woken_worker() -> WokenWorker:
    return WokenWorker(functions=[func(echo, name="echo")], redis_settings=RedisSettings.from_dsn(REDIS_URL),
                       queue_name=TRANSACTIONAL_QUEUE, poll_delay=0, handle_signals=False)


async def test_a_job_is_queued_once_per_id_as_arq_queues_it_and_leaves_one_wake_token(redis: ArqRedis) -> None:
    queue = ArqQueue(redis, TRANSACTIONAL_QUEUE)
    assert await queue.enqueue("echo", "a", _job_id="j1")
    assert not await queue.enqueue("echo", "b", _job_id="j1")  # the id is waiting already
    assert await queue.enqueue("echo", "c", _job_id="j2")
    assert await redis.execute_command("LLEN", wake_key(TRANSACTIONAL_QUEUE)) == 1  # type: ignore[no-untyped-call]  # one token wakes, however many jobs
    info = await Job("j1", redis, _queue_name=TRANSACTIONAL_QUEUE).info()
    assert info is not None and (info.function, info.args) == ("echo", ("a",))
    assert await Job("j1", redis, _queue_name=TRANSACTIONAL_QUEUE).status() is JobStatus.queued


async def test_the_worker_is_woken_by_a_job_rather_than_waiting_for_its_next_poll(
    redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "TRANSACTIONAL_WAKE_WAIT", 10.0)  # without the wake-up: 10 s to the next poll
    running = woken_worker()
    task = asyncio.create_task(running.async_run())
    try:
        await asyncio.sleep(0.5)  # started, and waiting on the wake list
        started = time.perf_counter()
        assert await ArqQueue(redis, TRANSACTIONAL_QUEUE).enqueue("echo", "now", _job_id="j")
        result = await Job("j", redis, _queue_name=TRANSACTIONAL_QUEUE).result(timeout=5, poll_delay=0.01)
        assert result == "now"
        assert time.perf_counter() - started < 2.0
        # a job already done keeps its id: queuing it again does nothing
        assert not await ArqQueue(redis, TRANSACTIONAL_QUEUE).enqueue("echo", "again", _job_id="j")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await running.close()
