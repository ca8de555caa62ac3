"""The arq worker: the one list of job functions, the start-up that builds their runtime, and
a worker that takes the next job as soon as one of its own ends.

`ecrm worker` runs these on Redis. `in_process_queue` gives the same functions to the
in-process queue when no Redis is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from arq import Worker, func
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import Function

from ecrm import heap
from ecrm.campaigns.jobs import plan_run_job
from ecrm.deliveries.jobs import send_batch_job
from ecrm.queue import ArqQueue, InProcessQueue, JobFunction
from ecrm.runtime import open_runtime
from ecrm.settings import Settings, load_settings

JOBS: dict[str, JobFunction] = {"plan_run": plan_run_job, "send_batch": send_batch_job}
# Our jobs decide when to stop retrying (settings.send.max_tries); arq's cap only backstops it.
ARQ_MAX_TRIES = 1000


def make_startup(settings: Settings | None, settle: bool = False) -> Any:
    """arq's on_startup: build the runtime and warm it; `settle` the heap too when this is the
    process's own start-up (`ecrm worker` settles before arq starts; tests run workers inside
    pytest)."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["runtime"] = runtime = open_runtime(settings or load_settings(), ArqQueue(ctx["redis"]))
        await runtime.warm()
        if settle:
            heap.settle()

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    if "runtime" in ctx:
        await ctx["runtime"].close()


class WorkerSettings:
    """arq settings (`arq ecrm.worker.WorkerSettings` works too); settings load at start-up."""

    functions: ClassVar[list[Function]] = [func(job, name=name, max_tries=ARQ_MAX_TRIES) for name, job in JOBS.items()]  # type: ignore[arg-type]
    on_startup = make_startup(None, settle=True)
    on_shutdown = shutdown
    max_jobs = 4
    poll_delay = 0.05  # seconds; arq's 0.5 s default leaves a worker idle while batches wait


class PromptWorker(Worker):
    """arq's worker, which takes the next job as soon as one of its own ends.

    arq's worker leaves slots idle in two ways, each measured at 25-100 ms per wave of 0.6 s
    batches in `python -m bench.send` (a worker's send jobs share its SMTP connections and tend
    to end together):
    - it reads the queue once per `poll_delay`, and not at all while its `max_jobs` slots are
      busy, so a slot that frees between two polls stays empty until the next one;
    - the queue it reads lists every job due, running ones first (a job leaves the queue when it
      ends), and it tries them one by one, three Redis round trips each, before it reaches one
      that nobody runs: with 8 jobs running, about 25 round trips to start one.
    Here the pause between two polls ends as soon as a job ends, and a poll asks Redis in one
    round trip which of the listed jobs are running, then tries only the others, no more than
    it has free slots (arq still checks each, atomically, as it starts it). Jobs enqueued by
    other processes are found by polling every `poll_delay`. (`arq ecrm.worker.WorkerSettings`
    runs arq's own worker, without this.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # arq's loop then only yields between polls; the pause is taken in _poll_iteration
        self.pause, self.poll_delay_s = self.poll_delay_s, 0.0
        self._job_ended = asyncio.Event()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._job_ended.set()

    async def _poll_iteration(self) -> None:
        self._job_ended.clear()  # before polling: a job ending during the poll still ends the pause
        await super()._poll_iteration()
        if self.pause > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.pause):
                    await self._job_ended.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        candidates = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        if free <= 0 or not candidates:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in candidates:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            running = await pipe.execute()
        await super().start_jobs([job_id for job_id, busy in zip(candidates, running, strict=True) if not busy][:free])


def make_worker(settings: Settings, **options: Any) -> PromptWorker:
    """An arq worker for `settings` (tests pass burst=True, poll_delay=0, handle_signals=False)."""
    if not settings.redis_url:
        raise ValueError("the arq worker needs redis_url (ECRM_REDIS_URL)")
    options.setdefault("max_jobs", WorkerSettings.max_jobs)
    options.setdefault("job_timeout", settings.send.job_timeout)
    options.setdefault("poll_delay", WorkerSettings.poll_delay)
    return PromptWorker(functions=WorkerSettings.functions, redis_settings=RedisSettings.from_dsn(settings.redis_url),
                        on_startup=make_startup(settings), on_shutdown=shutdown, **options)


def in_process_queue(settings: Settings) -> InProcessQueue:
    return InProcessQueue(JOBS, max_tries=settings.send.max_tries)
