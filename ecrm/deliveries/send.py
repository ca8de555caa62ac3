"""Send one batch of a send, exactly once per delivery, on any channel kind.

1. Take the batch over (`deliveries.claims`): what a dead attempt left in flight becomes
   `unknown` (it may have reached the provider, so resending could double it), and the batch's
   `queued` recipients are read, in delivery id order.
2. Then chunk by chunk (`CLAIM_CHUNK` recipients): compose them with the kind's composer, hand
   them to the channel with its bounded concurrency, and atomically record every outcome (sent
   with the provider's message id, failed, unknown, or still queued for a retry; on the last
   try, failed as `temporary_exhausted`) and mark the next chunk in flight. Composer and
   channel share one message type `M` (`channels.registry.Pairing`). The database work is the
   runtime's `BatchStore` (`deliveries.batch_store`). A worker killed outright leaves at most
   one chunk in doubt, never the whole batch; an attempt taken over by a newer one stops at its next chunk.
If the job is cancelled mid-send, messages in flight finish and what completed is recorded
before the cancellation goes on, so the retried job starts from exactly what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ecrm import metrics
from ecrm.channels.base import Channel, Outcome, SendInterrupted, SendResult, send_many
from ecrm.deliveries.batch_store import span
from ecrm.deliveries.claims import Owner, SupersededError
from ecrm.deliveries.early_receipts import settle
from ecrm.deliveries.journal import Journal, abandoned, journal_dir, process_start
from ecrm.deliveries.refusals import apply_refusals, refusals
from ecrm.deliveries.states import DeliveryStatus, Reason
from ecrm.deliveries.store import Change
from ecrm.errors import PermanentSendError, SendError, TemplateError, TransientSendError, UncertainSendError
from ecrm.render.composer import Composer
from ecrm.render.recipient import Recipient
from ecrm.runtime import Runtime
from ecrm.types import ChannelKind

logger = logging.getLogger(__name__)
M = TypeVar("M")
T = TypeVar("T")


@dataclass(frozen=True)
class BatchOutcome:
    sent: int
    failed: int  # failed, unknown or skipped: ended without a send
    retry: int
    retry_after: float | None = None
    retry_reason: str | None = None

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        waits = [w for w in (self.retry_after, other.retry_after) if w is not None]
        return BatchOutcome(self.sent + other.sent, self.failed + other.failed, self.retry + other.retry,
                            max(waits, default=None), self.retry_reason or other.retry_reason)


@dataclass(frozen=True, slots=True)
class Sender(Generic[M]):
    """What a send job sends a batch with: the send's composer and its channel, on one `M`."""

    composer: Composer[M]
    channel: Channel[M]
    last_try: bool = False  # transient failures are given up as `temporary_exhausted`
    after_send: Callable[[Sequence[M | None]], Awaitable[object]] | None = None  # once a chunk is recorded
    settles_receipts: bool = False  # the provider reports by callback: apply what came early (`early_receipts`)


CLAIM_CHUNK = 200  # recipients marked in flight, sent and recorded together


COMPOSE_SLICE = 32  # recipients composed between two yields to the event loop


class ComposeError(PermanentSendError):
    """This recipient cannot get this message (a template that does not render for them, no
    address on the channel): our side's failure, recorded as technical."""


async def compose_all(composer: Composer[M], recipients: Sequence[Recipient]) -> tuple[list[M | None], list[Outcome]]:
    """Messages to send (None where composing failed) and the failures, index by index. Yields to
    the event loop every few recipients so other batches' provider replies are not kept waiting."""
    messages: list[M | None] = []
    outcomes: list[Outcome] = []
    for index, recipient in enumerate(recipients, 1):
        try:
            messages.append(composer.compose(recipient))
            outcomes.append(None)
        except (TemplateError, ValueError) as exc:
            messages.append(None)
            outcomes.append(ComposeError(f"could not compose: {exc}"))
        if index % COMPOSE_SLICE == 0:
            await asyncio.sleep(0)
    return messages, outcomes


async def send_batch(runtime: Runtime, sender: Sender[M], send_id: int, batch: int) -> BatchOutcome:
    """Send what is queued in the batch; raise SupersededError if a newer attempt took it over."""
    directory = journal_dir(runtime.settings.database_url)
    await settle_abandoned(runtime, directory, send_id, batch)
    started = await runtime.batches.start(send_id, batch, CLAIM_CHUNK, sender.channel.kind)
    recipients = started.recipients
    chunks = [recipients[start : start + CLAIM_CHUNK] for start in range(0, len(recipients), CLAIM_CHUNK)]
    total = BatchOutcome(0, started.erased, 0)
    if started.erased:
        metrics.SENDS.labels(sender.channel.kind, DeliveryStatus.SKIPPED).inc(started.erased)
    journal = open_journal(directory, started.owner, sender.channel.provider)
    try:
        for index, chunk in enumerate(chunks):
            following = chunks[index + 1] if index + 1 < len(chunks) else None
            total += await send_chunk(runtime, sender, started.owner, chunk, following, journal)
    finally:
        if journal is not None:
            journal.close()
    if sender.settles_receipts and recipients:
        await settle(runtime.sessions, recipients[0].delivery_id, recipients[-1].delivery_id, runtime.clock.now())
    return total


async def settle_abandoned(runtime: Runtime, directory: Path, send_id: int, batch: int) -> None:
    """Settle, message by message, the chunk a sender killed outright left in flight, from its
    journal (`deliveries.journal`), before the batch is taken over; a batch with no journal on
    this host keeps its whole chunk in doubt."""
    for found in await asyncio.to_thread(abandoned, directory, send_id, batch):
        owner = Owner(send_id, batch, found.attempt)
        cleared = await runtime.batches.record(owner, found.changes, None)  # False: taken over since
        logger.info("send %d batch %d: a dead sender's journal settled %d message(s)%s", send_id, batch,
                    len(found.changes), "" if cleared else " (the batch had been taken over since)")
        found.path.unlink(missing_ok=True)


def open_journal(directory: Path, owner: Owner, provider: str) -> Journal | None:
    """The attempt's journal; None where processes cannot be told apart after the fact (no
    /proc: a live sender's journal could be taken for a dead one's) or no file can be made."""
    if process_start(os.getpid()) is None:
        return None
    try:
        return Journal(directory, owner.send_id, owner.batch, owner.attempt, provider)
    except OSError:  # without one, a sender killed outright leaves its whole chunk in doubt
        logger.warning("no send journal in %s; a crash would leave whole chunks in doubt", directory,
                       exc_info=True)
        return None


async def send_chunk(runtime: Runtime, sender: Sender[M], owner: Owner, recipients: list[Recipient],
                     following: list[Recipient] | None, journal: Journal | None = None) -> BatchOutcome:
    """Send a chunk already marked in flight; record it and mark `following` in flight. On a
    cancellation, what was handed over is recorded, and what was not (the chunk while it is
    composed, the following chunk once this one is recorded) stays queued, with no mark in
    flight left behind to be taken for in doubt. `journal` notes each message as it goes."""
    if journal is not None:
        journal.begin([r.delivery_id for r in recipients])
    try:
        messages, outcomes = await compose_all(sender.composer, recipients)
    except asyncio.CancelledError:
        with contextlib.suppress(SupersededError):
            await uncancellable(record(runtime, owner, recipients, [None] * len(recipients), None))
        raise
    kind = sender.channel.kind
    started = time.perf_counter()
    try:
        sent = await send_many(sender.channel, messages, journal)
    except SendInterrupted as stop:
        with contextlib.suppress(SupersededError):
            await uncancellable(record(runtime, owner, recipients, merge(outcomes, stop.outcomes), None,
                                       channel=kind))
        raise asyncio.CancelledError from None
    metrics.SEND_CHUNK_SECONDS.labels(kind).observe(time.perf_counter() - started)
    try:
        recorded = await uncancellable(record(runtime, owner, recipients, merge(outcomes, sent), following,
                                              sender.last_try, channel=kind))
        if sender.after_send is not None:
            await sender.after_send(messages)
        return recorded
    except asyncio.CancelledError:  # `following` was just marked in flight: it was not, and will not be
        if following:
            with contextlib.suppress(SupersededError):
                await uncancellable(record(runtime, owner, following, [None] * len(following), None))
        raise


async def uncancellable(recording: Coroutine[Any, Any, T]) -> T:
    """Run a chunk's recording to its end even if the caller is cancelled meanwhile (once or
    again: Ctrl-C, then the event loop cancelling what is left on its way out); the
    cancellation is passed on afterwards. Messages handed over are never left unrecorded."""
    task = asyncio.ensure_future(recording)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        task.result()  # an error recording wins over the cancellation
        raise asyncio.CancelledError
    return task.result()


def merge(first: list[Outcome], second: list[Outcome]) -> list[Outcome]:
    return [a if a is not None else b for a, b in zip(first, second, strict=True)]


async def record(runtime: Runtime, owner: Owner, recipients: Sequence[Recipient], outcomes: Sequence[Outcome],
                 following: Sequence[Recipient] | None, last_try: bool = False, channel: str = "") -> BatchOutcome:
    """Write every outcome of the chunk and mark the following chunk in flight, in one
    transaction; the outcomes are kept even when the batch turns out to be taken over. They are
    counted in `ecrm_sends_total` under `channel` once written."""
    changes = [change_for(r.delivery_id, outcome, last_try) for r, outcome in zip(recipients, outcomes, strict=True)]
    if not await runtime.batches.record(owner, changes, span(following)):
        raise SupersededError(owner)
    if channel and (refused := refusals(recipients, outcomes)):
        await apply_refusals(runtime, ChannelKind(channel), refused)
    waits = [o.retry_after for o in outcomes if isinstance(o, TransientSendError) and o.retry_after]
    reasons = [c.error for c in changes if c.status is DeliveryStatus.QUEUED]
    count = Counter(c.status for c in changes)
    if channel:
        metrics.count_sends(channel, count.items())
    return BatchOutcome(count[DeliveryStatus.SENT], len(changes) - count[DeliveryStatus.SENT] - len(reasons),
                        len(reasons), max(waits, default=None), reasons[0] if reasons else None)


def change_for(delivery_id: int, outcome: Outcome, last_try: bool = False) -> Change:
    """The row change an outcome means (see `deliveries.states`)."""
    if isinstance(outcome, SendResult):
        return Change(delivery_id, DeliveryStatus.SENT, None, outcome.provider, outcome.provider_message_id,
                      parts=outcome.parts)
    if isinstance(outcome, PermanentSendError):
        reason = Reason.TECHNICAL if isinstance(outcome, ComposeError) else Reason.PERMANENT
        return Change(delivery_id, DeliveryStatus.FAILED, reason, error=outcome.reason)
    if isinstance(outcome, UncertainSendError):
        return Change(delivery_id, DeliveryStatus.UNKNOWN, Reason.ADAPTER_ERROR, error=outcome.reason)
    error = outcome.reason if isinstance(outcome, SendError) else "not attempted (job interrupted)"
    if last_try and isinstance(outcome, TransientSendError):
        return Change(delivery_id, DeliveryStatus.FAILED, Reason.TEMPORARY_EXHAUSTED, error=error)
    return Change(delivery_id, DeliveryStatus.QUEUED, error=error)
