"""Job of stage 6: send one batch of a run (arq function `send_batch`).

Transient failures go back to `queued` and the job raises `arq.Retry` with exponential
backoff (or the provider's Retry-After); after the last try they stay queued with their
error, so nothing is dropped and a re-launch resumes them.
"""

from __future__ import annotations

import logging
from typing import cast

from arq.worker import Retry

from ecrm.campaigns.launch import load_run_spec
from ecrm.deliveries.claims import SupersededError
from ecrm.deliveries.send import send_batch
from ecrm.render.email import EmailComposer
from ecrm.runtime import JobContext, Runtime

logger = logging.getLogger(__name__)
MAX_BACKOFF = 3600.0


async def composer_for(runtime: Runtime, run_id: int) -> EmailComposer:
    key = ("composer", run_id)
    composer = runtime.cache.get(key)
    if composer is None:
        spec = await load_run_spec(runtime, run_id)
        composer = runtime.cache[key] = EmailComposer(runtime.settings, runtime.catalog, spec.template, spec.name)
    return cast(EmailComposer, composer)


async def send_batch_job(ctx: JobContext, run_id: int, batch: int) -> str:
    runtime = ctx["runtime"]
    try:
        outcome = await send_batch(runtime, await composer_for(runtime, run_id), run_id, batch)
    except SupersededError as superseded:
        logger.info("%s; it stops here and the newer attempt sends the rest", superseded)
        return "superseded"
    job_try, max_tries = ctx.get("job_try", 1), runtime.settings.send.max_tries
    if outcome.retry and job_try < max_tries:
        delay = outcome.retry_after or min(MAX_BACKOFF, runtime.settings.send.retry_delay * 2 ** (job_try - 1))
        logger.warning("run %d batch %d: %d message(s) not handed over (%s); retrying in %.0f s (try %d of %d)",
                       run_id, batch, outcome.retry, outcome.retry_reason, delay, job_try + 1, max_tries)
        raise Retry(defer=delay)
    if outcome.retry:
        logger.error("run %d batch %d: %d message(s) still not handed over after %d tries (%s); they stay "
                     "queued: launch the run again to resume", run_id, batch, outcome.retry, job_try,
                     outcome.retry_reason)
    await runtime.batches.close(run_id, batch)
    return f"sent {outcome.sent}, failed {outcome.failed}, waiting {outcome.retry}"
