"""Job of stage 6: send one batch of a send (arq function `send_batch`).

The job reads its send (channel, template, label), builds the channel kind's composer once per
send and process, and sends the batch with the kind's channel (`channels.registry`). Transient
failures go back to `queued` and the job raises `arq.Retry` with exponential backoff (or the
provider's Retry-After); on the last try they are recorded `failed` (`temporary_exhausted`),
which launching the same run again queues once more: nothing is dropped.

When the send is done (planned, and no batch open), the job enqueues `send_done` with the
send's source, for the stage that owns the source to decide what that means.
"""

from __future__ import annotations

import logging
import random
from functools import partial
from typing import TypeVar

from arq.worker import Retry

from ecrm.channels.registry import PAIRINGS, Pairing
from ecrm.deliveries.claims import SupersededError
from ecrm.deliveries.send import BatchOutcome, Sender, send_batch
from ecrm.deliveries.sends import SendRef
from ecrm.render.composer import WithData, send_stream
from ecrm.runtime import JobContext, Runtime

logger = logging.getLogger(__name__)
MAX_BACKOFF = 3600.0
M = TypeVar("M")


async def send_of(runtime: Runtime, send_id: int) -> SendRef:
    send = runtime.sends.get(send_id)
    if send is None:
        send = runtime.sends.put(send_id, await runtime.batches.send(send_id))
    return send


def sender_for(runtime: Runtime, pairing: Pairing[M], send: SendRef, last_try: bool) -> Sender[M]:
    """The send's composer (built once per send and process) with its kind's channel."""
    composer = runtime.composers.get(send.id)
    if composer is None:
        stream = send_stream(send.source_kind, send.source_id)
        composer = pairing.composer(runtime.settings, runtime.catalog, send.template, send.label, runtime.clock,
                                    stream)
        composer = runtime.composers.put(send.id, WithData(composer, send.data) if send.data else composer)
    after_send = partial(pairing.after_send, runtime.sessions) if pairing.after_send is not None else None
    return Sender(composer, runtime.channels.open(pairing), last_try, after_send, settles_receipts=pairing.callbacks)


async def send_batch_job(ctx: JobContext, send_id: int, batch: int) -> str:
    runtime = ctx["runtime"]
    send = await send_of(runtime, send_id)
    job_try, max_tries = ctx.get("job_try", 1), runtime.settings.send.max_tries
    sender = sender_for(runtime, PAIRINGS[send.channel], send, last_try=job_try >= max_tries)
    try:
        outcome = await send_batch(runtime, sender, send_id, batch)
    except SupersededError as superseded:
        logger.info("%s; it stops here and the newer attempt sends the rest", superseded)
        return "superseded"
    if outcome.retry and job_try < max_tries:
        raise _retry(runtime, send_id, batch, outcome, job_try)
    if outcome.retry:
        logger.error("send %d batch %d: %d message(s) not handed over after %d tries (%s); they stay queued: "
                     "launch the run again to resume", send_id, batch, outcome.retry, job_try, outcome.retry_reason)
    if await runtime.batches.close(send_id, batch):
        await runtime.queue.enqueue("send_done", send.source_kind.value, send.source_id)
    return f"sent {outcome.sent}, failed {outcome.failed}"


def _retry(runtime: Runtime, send_id: int, batch: int, outcome: BatchOutcome, job_try: int) -> Retry:
    # the provider's Retry-After as given; else exponential backoff with jitter, so batches
    # throttled together (a 429 burst) do not all come back at the same moment
    backoff = min(MAX_BACKOFF, runtime.settings.send.retry_delay * 2 ** (job_try - 1))
    delay = outcome.retry_after or backoff * random.uniform(0.5, 1.0)
    logger.warning("send %d batch %d: %d message(s) not handed over (%s); retrying in %.0f s (try %d of %d)",
                   send_id, batch, outcome.retry, outcome.retry_reason, delay, job_try + 1,
                   runtime.settings.send.max_tries)
    return Retry(defer=delay)
