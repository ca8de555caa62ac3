"""The arq worker: the one list of job functions, and the start-up that builds their runtime.

`ecrm worker` runs these on Redis. `in_process_queue` gives the same functions to the
in-process queue when no Redis is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

from arq import Worker, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Function

from ecrm import heap, priority
from ecrm.campaigns.jobs import finish_run_job, plan_run_job
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.channels.registry import EMAIL
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.deliveries.jobs import send_batch_job
from ecrm.errors import TransientSendError
from ecrm.queue import TRANSACTIONAL_QUEUE, ArqQueue, InProcessQueue, JobFunction, wake_key
from ecrm.runtime import JobContext, Runtime, open_runtime
from ecrm.segments.jobs import segments_touched_job
from ecrm.segments.schedule import refresh_cron
from ecrm.settings import Settings, load_settings
from ecrm.shops.jobs import MAP_JOB, map_webhook_job, map_webhooks_job
from ecrm.transactional.jobs import finish_message_job
from ecrm.types import SendSource

logger = logging.getLogger(__name__)

# What a finished send means is its source's business: the stage that owns each kind of source.
SEND_DONE: dict[SendSource, Callable[[JobContext, int], Awaitable[Any]]] = {
    SendSource.CAMPAIGN_RUN: finish_run_job,
    SendSource.TRANSACTIONAL: finish_message_job,
}


async def send_done_job(ctx: JobContext, source_kind: str, source_id: int) -> Any:
    """A send is done (enqueued by `deliveries.jobs`): tell the stage that owns its source."""
    return await SEND_DONE[SendSource(source_kind)](ctx, source_id)


JOBS: dict[str, JobFunction] = {"plan_run": plan_run_job, "send_batch": send_batch_job, "send_done": send_done_job,
                                "segments_touched": segments_touched_job, MAP_JOB: map_webhooks_job,
                                "map_webhook": map_webhook_job}  # one webhook: jobs queued by an older API
TRANSACTIONAL_MAX_JOBS = 16
TRANSACTIONAL_WAKE_WAIT = 0.25  # seconds the transactional worker waits to be woken before it polls anyway
# Our jobs decide when to stop retrying (settings.send.max_tries); arq's cap only backstops it.
ARQ_MAX_TRIES = 1000


def make_startup(settings: Settings | None, settle: bool = False, queue_name: str | None = None) -> Any:
    """arq's on_startup: build the runtime (its jobs enqueue on `queue_name`) and warm it; `settle`
    the heap too when this is the process's own start-up (`ecrm worker` settles before arq
    starts; tests run workers inside pytest)."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["runtime"] = runtime = open_runtime(settings or load_settings(), ArqQueue(ctx["redis"], queue_name))
        await runtime.warm()
        if queue_name == TRANSACTIONAL_QUEUE:
            await warm_smtp(runtime)
        if settle:
            heap.settle()

    return startup


async def warm_smtp(runtime: Runtime) -> None:
    """Open the transactional worker's SMTP connection now, so the first message does not wait
    for the connection, the greeting and EHLO. The pool keeps it; if the server closes it while
    idle, the next message opens another. A server that does not answer yet is only logged."""
    channel = runtime.channels.open(EMAIL)
    try:
        if isinstance(channel, SmtpEmail):
            await channel.warm_up(1)
    except TransientSendError as exc:
        logger.warning("no SMTP connection opened at start-up (%s); the first message opens one", exc)


async def shutdown(ctx: dict[str, Any]) -> None:
    if "runtime" in ctx:
        await ctx["runtime"].close()


class WorkerSettings:
    """arq settings (`arq ecrm.worker.WorkerSettings` works too); settings load at start-up."""

    functions: ClassVar[list[Function]] = [func(job, name=name, max_tries=ARQ_MAX_TRIES) for name, job in JOBS.items()]  # type: ignore[arg-type]
    cron_jobs: ClassVar[list[CronJob]] = [refresh_cron(5)]
    on_startup = make_startup(None, settle=True)
    on_shutdown = shutdown
    max_jobs = 4
    poll_delay = 0.05  # seconds; arq's 0.5 s default leaves a worker idle while batches wait


def make_worker(settings: Settings, queue_name: str | None = None, worker_class: type[Worker] = Worker,
                **options: Any) -> Worker:
    """An arq Worker for `settings` on `queue_name` (None: the campaigns' default queue; tests
    pass burst=True, poll_delay=0, handle_signals=False)."""
    if not settings.redis_url:
        raise ValueError("the arq worker needs redis_url (ECRM_REDIS_URL)")
    options.setdefault("max_jobs", WorkerSettings.max_jobs)
    options.setdefault("job_timeout", settings.send.job_timeout)
    options.setdefault("poll_delay", WorkerSettings.poll_delay)
    if queue_name is not None:
        options["queue_name"] = queue_name
    else:  # the scheduled segment refresh runs beside campaigns, never on the transactional queue
        options.setdefault("cron_jobs", [refresh_cron(settings.segment_refresh_minutes)])
    return worker_class(functions=WorkerSettings.functions, redis_settings=RedisSettings.from_dsn(settings.redis_url),
                  on_startup=make_startup(settings, queue_name=queue_name), on_shutdown=shutdown, **options)


class WokenWorker(Worker):
    """arq's worker, woken by its queue's wake list (`queue.wake_key`, pushed with each job due
    now) instead of sleeping `poll_delay` between polls: it polls, then waits on the list for at
    most `TRANSACTIONAL_WAKE_WAIT` seconds (jobs deferred for a retry are due meanwhile), polls
    again, and so on. arq itself only polls (python-arq/arq#404)."""

    async def _poll_iteration(self) -> None:
        await super()._poll_iteration()
        if not self.burst:
            # BLPOP takes a fraction of a second (Redis 6+); redis-py's signature says int
            wait = self.pool.blpop([wake_key(self.queue_name)], timeout=TRANSACTIONAL_WAKE_WAIT)  # type: ignore[arg-type]
            await cast(Awaitable[Any], wait)


def make_transactional_worker(settings: Settings, **options: Any) -> Worker:
    """A worker for transactional messages only: their own queue, woken as each is queued, with
    `TRANSACTIONAL_MAX_JOBS` at once (a job is one message, waiting on the database and SMTP
    most of its time: four at once queued messages behind each other under load)."""
    options.setdefault("poll_delay", 0)
    options.setdefault("max_jobs", TRANSACTIONAL_MAX_JOBS)
    return make_worker(settings, TRANSACTIONAL_QUEUE, worker_class=WokenWorker, **options)


def yield_cores(settings: Settings) -> int:
    """Lower this process's CPU priority by `send.campaign_nice` and to `send.campaign_policy`
    (the campaigns' worker does, so bulk sends yield the cores to the API and the transactional
    worker); the new niceness."""
    return priority.yield_cores(settings.send.campaign_nice, settings.send.campaign_policy)


def in_process_queue(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> InProcessQueue:
    return InProcessQueue(JOBS, max_tries=settings.send.max_tries, clock=clock)
