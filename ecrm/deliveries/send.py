"""Send one batch of a run, exactly once per delivery.

1. Read: rows a crashed attempt left in `sending` become `failed` (they may have reached the
   provider, so resending could double them); the batch's `queued` recipients are read.
2. Then chunk by chunk (`CLAIM_CHUNK` recipients): claim the chunk's rows (`queued` ->
   `sending`), compose them (render + MIME), hand them to the channel with its bounded
   concurrency, and record every outcome in one transaction (`deliveries.store`): sent (with
   the provider's message id), failed (permanent), or back to queued (transient, retried by the
   job). A worker killed outright leaves at most one chunk in doubt, never the whole batch.
If the job is cancelled mid-send, messages in flight finish and what completed is recorded
before the cancellation goes on, so the retried job starts from exactly what is left.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.channels.base import Outcome, SendInterrupted, SendResult, send_many
from ecrm.db import utcnow
from ecrm.deliveries.models import DELIVERIES
from ecrm.deliveries.store import Change, write_changes
from ecrm.errors import PermanentSendError, SendError, TemplateError, TransientSendError
from ecrm.profiles.models import Profile
from ecrm.render.email import EmailComposer
from ecrm.render.recipient import Recipient
from ecrm.runtime import Runtime
from ecrm.types import DeliveryStatus

INTERRUPTED = ("interrupted while being handed to the provider; not resent, because it may have "
               "been delivered already")


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
RECIPIENT_COLUMNS = (D.id, D.idempotency_key, P.id, P.external_id, P.email, P.phone, P.first_name, P.last_name,
                     P.locale, P.time_zone, P.traits)


CLAIM_CHUNK = 200  # recipients claimed, sent and recorded together


async def read_batch(session: AsyncSession, run_id: int, batch: int) -> list[Recipient]:
    """Fail what a crashed attempt left in `sending`; return the batch's queued recipients."""
    in_batch = (D.run_id == run_id) & (D.batch == batch)
    await session.execute(update(DELIVERIES).where(in_batch, D.status == "sending")
                          .values(status="failed", failed_at=utcnow(), error=INTERRUPTED))
    rows = (await session.execute(select(*RECIPIENT_COLUMNS).join_from(DELIVERIES, PROFILES, D.profile_id == P.id)
                                  .where(in_batch, D.status == "queued").order_by(D.id))).all()
    return [Recipient(*row) for row in rows]


async def claim(session: AsyncSession, delivery_ids: list[int]) -> set[int]:
    """Move these deliveries from `queued` to `sending`; return the ids this attempt now owns."""
    claimed = (update(DELIVERIES).where(D.id.in_(delivery_ids), D.status == "queued")
               .values(status="sending", attempts=D.attempts + 1).returning(D.id))
    return set((await session.execute(claimed)).scalars())


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
    async with runtime.sessions.begin() as session:
        recipients = await read_batch(session, run_id, batch)
    total = BatchOutcome(0, 0, 0)
    for start in range(0, len(recipients), CLAIM_CHUNK):
        total += await send_chunk(runtime, composer, recipients[start : start + CLAIM_CHUNK])
    return total


async def send_chunk(runtime: Runtime, composer: EmailComposer, recipients: list[Recipient]) -> BatchOutcome:
    async with runtime.sessions.begin() as session:
        owned = await claim(session, [r.delivery_id for r in recipients])
    recipients = [r for r in recipients if r.delivery_id in owned]
    if not recipients:
        return BatchOutcome(0, 0, 0)
    messages, outcomes = await compose_all(composer, recipients)
    channel = runtime.channels.for_kind(composer.kind)
    try:
        sent = await send_many(channel, messages)
    except SendInterrupted as stop:
        await asyncio.shield(record(runtime, recipients, merge(outcomes, stop.outcomes)))
        raise asyncio.CancelledError from None
    return await record(runtime, recipients, merge(outcomes, sent))


def merge(first: list[Outcome], second: list[Outcome]) -> list[Outcome]:
    return [a if a is not None else b for a, b in zip(first, second, strict=True)]


async def record(runtime: Runtime, recipients: Sequence[Recipient], outcomes: Sequence[Outcome]) -> BatchOutcome:
    """Write every outcome of the batch in one transaction."""
    changes = [_change(recipient.delivery_id, outcome) for recipient, outcome in zip(recipients, outcomes, strict=True)]
    async with runtime.sessions.begin() as session:
        await write_changes(session, changes, utcnow())
    waits = [o.retry_after for o in outcomes if isinstance(o, TransientSendError) and o.retry_after]
    reasons = [c.error for c in changes if c.status is DeliveryStatus.QUEUED]
    count = Counter(c.status for c in changes)
    return BatchOutcome(count[DeliveryStatus.SENT], count[DeliveryStatus.FAILED], count[DeliveryStatus.QUEUED],
                        max(waits, default=None), reasons[0] if reasons else None)


def _change(delivery_id: int, outcome: Outcome) -> Change:
    if isinstance(outcome, SendResult):
        return Change(delivery_id, DeliveryStatus.SENT, outcome.provider, outcome.provider_message_id)
    if isinstance(outcome, PermanentSendError):
        return Change(delivery_id, DeliveryStatus.FAILED, error=outcome.reason)
    reason = outcome.reason if isinstance(outcome, SendError) else "not attempted (job interrupted)"
    return Change(delivery_id, DeliveryStatus.QUEUED, error=reason)
