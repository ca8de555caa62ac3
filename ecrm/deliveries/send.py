"""Send one batch of a run, exactly once per delivery.

1. Claim: in one transaction, rows a crashed attempt left in `sending` become `failed`
   (they may have reached the provider, so resending could double them), and the batch's
   `queued` rows become `sending`.
2. Compose every claimed recipient (render + MIME), then hand the messages to the channel
   with its bounded concurrency.
3. Record every outcome in one transaction of grouped UPDATEs: sent (with the provider's
   message id), failed (permanent), or back to queued (transient, retried by the job).
If the job is cancelled mid-send, messages in flight finish and what completed is recorded
before the cancellation goes on, so the retried job starts from exactly what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.channels.base import Outcome, SendInterrupted, SendResult, send_many
from ecrm.db import utcnow
from ecrm.deliveries.models import Delivery
from ecrm.errors import PermanentSendError, SendError, TemplateError, TransientSendError
from ecrm.profiles.models import Profile
from ecrm.render.email import EmailComposer
from ecrm.render.recipient import Recipient
from ecrm.runtime import Runtime

INTERRUPTED = ("interrupted while being handed to the provider; not resent, because it may have "
               "been delivered already")
DELIVERIES = cast(Table, Delivery.__table__)


@dataclass(frozen=True)
class BatchOutcome:
    sent: int
    failed: int
    retry: int
    retry_after: float | None = None


def recipients_query(run_id: int, batch: int) -> Select[*tuple[Any, ...]]:
    return (
        select(Delivery.id, Delivery.idempotency_key, Profile.id, Profile.external_id, Profile.email, Profile.phone,
               Profile.first_name, Profile.last_name, Profile.locale, Profile.time_zone, Profile.traits)
        .join(Profile, Profile.id == Delivery.profile_id)
        .where(Delivery.run_id == run_id, Delivery.batch == batch, Delivery.status == "sending")
        .order_by(Delivery.id)
    )


async def claim(session: AsyncSession, run_id: int, batch: int) -> list[Recipient]:
    now = utcnow()
    in_batch = (Delivery.run_id == run_id) & (Delivery.batch == batch)
    await session.execute(update(Delivery).where(in_batch, Delivery.status == "sending")
                          .values(status="failed", failed_at=now, error=INTERRUPTED))
    await session.execute(update(Delivery).where(in_batch, Delivery.status == "queued")
                          .values(status="sending", attempts=Delivery.attempts + 1))
    rows = (await session.execute(recipients_query(run_id, batch))).all()
    return [Recipient(*row) for row in rows]


def compose_all(composer: EmailComposer, recipients: Sequence[Recipient]) -> tuple[list[Any], list[Outcome]]:
    """Messages to send (None where composing failed) and the failures, index by index."""
    messages: list[Any] = []
    outcomes: list[Outcome] = []
    for recipient in recipients:
        try:
            messages.append(composer.compose(recipient))
            outcomes.append(None)
        except (TemplateError, ValueError) as exc:
            messages.append(None)
            outcomes.append(PermanentSendError(f"could not compose: {exc}"))
    return messages, outcomes


async def send_batch(runtime: Runtime, composer: EmailComposer, run_id: int, batch: int) -> BatchOutcome:
    async with runtime.sessions.begin() as session:
        recipients = await claim(session, run_id, batch)
    if not recipients:
        return BatchOutcome(0, 0, 0)
    messages, outcomes = compose_all(composer, recipients)
    channel = runtime.channels.for_kind(composer.kind)
    try:
        sent = await send_many(channel, messages)
    except SendInterrupted as stop:
        await asyncio.shield(record(runtime, recipients, merge(outcomes, stop.outcomes), interrupted=True))
        raise asyncio.CancelledError from None
    return await record(runtime, recipients, merge(outcomes, sent))


def merge(first: list[Outcome], second: list[Outcome]) -> list[Outcome]:
    return [a if a is not None else b for a, b in zip(first, second, strict=True)]


async def record(runtime: Runtime, recipients: Sequence[Recipient], outcomes: Sequence[Outcome],
                 interrupted: bool = False) -> BatchOutcome:
    """Write every outcome with one grouped UPDATE per kind of outcome, in one transaction."""
    now = utcnow()
    sent, failed, retry = [], [], []
    retry_after: float | None = None
    for recipient, outcome in zip(recipients, outcomes, strict=True):
        if isinstance(outcome, SendResult):
            sent.append({"b_id": recipient.delivery_id, "b_ref": outcome.provider_message_id,
                         "b_provider": outcome.provider})
        elif isinstance(outcome, PermanentSendError):
            failed.append({"b_id": recipient.delivery_id, "b_error": outcome.reason})
        else:
            reason = outcome.reason if isinstance(outcome, SendError) else "not attempted (job interrupted)"
            retry.append({"b_id": recipient.delivery_id, "b_error": reason})
            if isinstance(outcome, TransientSendError) and outcome.retry_after:
                retry_after = max(retry_after or 0.0, outcome.retry_after)
    async with runtime.sessions.begin() as session:
        await _write(session, sent, failed, retry, now)
    return BatchOutcome(len(sent), len(failed), len(retry), retry_after)


_MARK_SENT = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id")).values(
    status="sent", sent_at=bindparam("b_now"), provider=bindparam("b_provider"),
    provider_message_id=bindparam("b_ref"), error=None)
_MARK_FAILED = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id")).values(
    status="failed", failed_at=bindparam("b_now"), error=bindparam("b_error"))
_MARK_RETRY = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("b_id")).values(
    status="queued", error=bindparam("b_error"))


async def _write(session: AsyncSession, sent: list[dict[str, Any]], failed: list[dict[str, Any]],
                 retry: list[dict[str, Any]], now: datetime) -> None:
    for statement, rows in ((_MARK_SENT, sent), (_MARK_FAILED, failed), (_MARK_RETRY, retry)):
        if rows:
            for row in rows:
                row["b_now"] = now
            await session.execute(statement, rows)
