"""Send one batch of a run, exactly once per delivery.

1. Take the batch over (`deliveries.claims`): what a dead attempt left in flight becomes
   `failed` (it may have reached the provider, so resending could double it), and the batch's
   `queued` recipients are read, in delivery id order.
2. Then chunk by chunk (`CLAIM_CHUNK` recipients): compose them (render + MIME), hand them to
   the channel with its bounded concurrency, and in one transaction record every outcome
   (`deliveries.store`: sent with the provider's message id, failed, or still queued for a
   retry) and mark the next chunk in flight. A worker killed outright leaves at most one chunk
   in doubt, never the whole batch; an attempt taken over by a newer one stops at its next
   chunk.
If the job is cancelled mid-send, messages in flight finish and what completed is recorded
before the cancellation goes on, so the retried job starts from exactly what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ecrm.channels.base import Outcome, SendInterrupted, SendResult, send_many
from ecrm.db import utcnow
from ecrm.deliveries.claims import Owner, SupersededError, mark_in_flight, still_owner, take_over
from ecrm.deliveries.models import DELIVERIES
from ecrm.deliveries.store import Change, write_changes
from ecrm.errors import PermanentSendError, SendError, TemplateError, TransientSendError
from ecrm.profiles.models import Profile
from ecrm.render.email import EmailComposer
from ecrm.render.recipient import Recipient
from ecrm.runtime import Runtime
from ecrm.types import DeliveryStatus


@dataclass(frozen=True)
class BatchOutcome:
    sent: int
    failed: int
    retry: int
    retry_after: float | None = None
    retry_reason: str | None = None

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        waits = [w for w in (self.retry_after, other.retry_after) if w is not None]
        return BatchOutcome(self.sent + other.sent, self.failed + other.failed, self.retry + other.retry,
                            max(waits, default=None), self.retry_reason or other.retry_reason)


# Core tables, not ORM entities: the hot path skips the ORM's per-statement and per-row work.
PROFILES = cast(Table, Profile.__table__)
D, P = DELIVERIES.c, PROFILES.c
RECIPIENT_COLUMNS = (D.id, P.id, P.external_id, P.email, P.phone, P.first_name, P.last_name, P.locale, P.time_zone,
                     P.traits)


CLAIM_CHUNK = 200  # recipients marked in flight, sent and recorded together


_QUEUED = (select(*RECIPIENT_COLUMNS).outerjoin_from(DELIVERIES, PROFILES, D.profile_id == P.id)
           .where(D.run_id == bindparam("b_run"), D.batch == bindparam("b_batch"), D.status == "queued")
           .order_by(D.id))  # built once, see deliveries.claims


ERASED = "not sent: the profile was erased"


async def read_queued(connection: AsyncConnection, run_id: int, batch: int) -> tuple[list[Recipient], list[int]]:
    """The batch's recipients still queued, in delivery id order (chunks are id ranges), and the
    queued deliveries whose profile was erased after they were planned (see deliveries.models)."""
    rows: Sequence[Any] = (await connection.execute(_QUEUED, {"b_run": run_id, "b_batch": batch})).all()
    return [Recipient(*row) for row in rows if row[1] is not None], [row[0] for row in rows if row[1] is None]


def span(chunk: Sequence[Recipient] | None) -> tuple[int, int] | None:
    return (chunk[0].delivery_id, chunk[-1].delivery_id) if chunk else None


COMPOSE_SLICE = 32  # recipients composed between two yields to the event loop


async def compose_all(composer: EmailComposer, recipients: Sequence[Recipient]) -> tuple[list[Any], list[Outcome]]:
    """Messages to send (None where composing failed) and the failures, index by index. Yields to
    the event loop every few recipients so other batches' SMTP replies are not kept waiting."""
    messages: list[Any] = []
    outcomes: list[Outcome] = []
    for index, recipient in enumerate(recipients, 1):
        try:
            messages.append(composer.compose(recipient))
            outcomes.append(None)
        except (TemplateError, ValueError) as exc:
            messages.append(None)
            outcomes.append(PermanentSendError(f"could not compose: {exc}"))
        if index % COMPOSE_SLICE == 0:
            await asyncio.sleep(0)
    return messages, outcomes


async def send_batch(runtime: Runtime, composer: EmailComposer, run_id: int, batch: int) -> BatchOutcome:
    """Send what is queued in the batch; raise SupersededError if a newer attempt took it over."""
    async with runtime.engine.begin() as connection:
        owner = await take_over(connection, run_id, batch)
        recipients, erased = await read_queued(connection, run_id, batch)
        if erased:
            await write_changes(connection, [Change(i, DeliveryStatus.FAILED, error=ERASED) for i in erased], utcnow())
        chunks = [recipients[start : start + CLAIM_CHUNK] for start in range(0, len(recipients), CLAIM_CHUNK)]
        await mark_in_flight(connection, owner, span(chunks[0] if chunks else None))
    total = BatchOutcome(0, len(erased), 0)
    for index, chunk in enumerate(chunks):
        following = chunks[index + 1] if index + 1 < len(chunks) else None
        total += await send_chunk(runtime, composer, owner, chunk, following)
    return total


async def send_chunk(runtime: Runtime, composer: EmailComposer, owner: Owner, recipients: list[Recipient],
                     following: list[Recipient] | None) -> BatchOutcome:
    """Send a chunk already marked in flight; record it and mark `following` in flight."""
    messages, outcomes = await compose_all(composer, recipients)
    channel = runtime.channels.for_kind(composer.kind)
    try:
        sent = await send_many(channel, messages)
    except SendInterrupted as stop:
        with contextlib.suppress(SupersededError):
            await asyncio.shield(record(runtime, owner, recipients, merge(outcomes, stop.outcomes), None))
        raise asyncio.CancelledError from None
    return await record(runtime, owner, recipients, merge(outcomes, sent), following)


def merge(first: list[Outcome], second: list[Outcome]) -> list[Outcome]:
    return [a if a is not None else b for a, b in zip(first, second, strict=True)]


async def record(runtime: Runtime, owner: Owner, recipients: Sequence[Recipient], outcomes: Sequence[Outcome],
                 following: Sequence[Recipient] | None) -> BatchOutcome:
    """Write every outcome of the chunk and mark the following chunk in flight, in one
    transaction; the outcomes are kept even when the batch turns out to be taken over."""
    changes = [change_for(r.delivery_id, outcome) for r, outcome in zip(recipients, outcomes, strict=True)]
    async with runtime.engine.begin() as connection:
        await write_changes(connection, changes, utcnow())
        owned = await still_owner(connection, owner, span(following))
    if not owned:
        raise SupersededError(owner)
    waits = [o.retry_after for o in outcomes if isinstance(o, TransientSendError) and o.retry_after]
    reasons = [c.error for c in changes if c.status is DeliveryStatus.QUEUED]
    count = Counter(c.status for c in changes)
    return BatchOutcome(count[DeliveryStatus.SENT], count[DeliveryStatus.FAILED], count[DeliveryStatus.QUEUED],
                        max(waits, default=None), reasons[0] if reasons else None)


def change_for(delivery_id: int, outcome: Outcome) -> Change:
    """The row change an outcome means: sent, failed for good, or queued again for a retry."""
    if isinstance(outcome, SendResult):
        return Change(delivery_id, DeliveryStatus.SENT, outcome.provider, outcome.provider_message_id)
    if isinstance(outcome, PermanentSendError):
        return Change(delivery_id, DeliveryStatus.FAILED, error=outcome.reason)
    reason = outcome.reason if isinstance(outcome, SendError) else "not attempted (job interrupted)"
    return Change(delivery_id, DeliveryStatus.QUEUED, error=reason)
