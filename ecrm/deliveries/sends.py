"""Sends: open one for a source, read what its jobs need, and plan it again.

A source (a campaign run, a journey step, a transactional request) opens its send once per
channel; opening it again returns the same send, which is what makes a re-launch a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery, Send, SendBatch
from ecrm.deliveries.states import RESENDABLE, RESUMABLE, DeliveryStatus
from ecrm.types import ChannelKind, SendSource


@dataclass(frozen=True, slots=True)
class SendRef:
    """What a send job needs to know of its send: the channel and what to compose."""

    id: int
    source_kind: SendSource
    source_id: int
    channel: ChannelKind
    template: str
    label: str
    data: dict[str, Any] | None = None  # what its templates see as `data`


def _ref(send: Send) -> SendRef:
    return SendRef(send.id, SendSource(send.source_kind), send.source_id, ChannelKind(send.channel), send.template,
                   send.label, send.data)


async def open_send(session: AsyncSession, source: SendSource, source_id: int, channel: ChannelKind, template: str,
                    label: str, now: datetime, data: dict[str, Any] | None = None) -> SendRef:
    """The source's send over `channel`, created if it has none yet (with `data` for its templates)."""
    send = await session.scalar(select(Send).where(Send.source_kind == source, Send.source_id == source_id,
                                                   Send.channel == channel))
    if send is None:
        send = Send(source_kind=source, source_id=source_id, channel=channel, template=template, label=label,
                    created_at=now, data=data)
        session.add(send)
        await session.flush()
    return _ref(send)


async def load_send(session: AsyncSession, send_id: int) -> SendRef:
    return _ref(await session.get_one(Send, send_id))


async def sends_of(session: AsyncSession, source: SendSource, source_id: int) -> list[Send]:
    return list(await session.scalars(select(Send).where(Send.source_kind == source, Send.source_id == source_id)))


async def replan(session: AsyncSession, send_id: int) -> int:
    """Before a send is planned again (a re-launch): mark it unplanned and not done, queue again
    what an outage made fail after every retry (`states.RESUMABLE`), and reopen every batch it
    has; return how many batches there are."""
    await session.execute(update(Send).where(Send.id == send_id).values(planned_at=None, done_at=None))
    await session.execute(update(Delivery).where(
        Delivery.send_id == send_id, Delivery.status == RESUMABLE[0], Delivery.reason == RESUMABLE[1],
    ).values(status=DeliveryStatus.QUEUED, reason=None))
    result = await session.execute(update(SendBatch).where(SendBatch.send_id == send_id).values(done_at=None))
    return int(cast(CursorResult[Any], result).rowcount or 0)


RESENT = "was in doubt (may have been sent); queued again by an operator's resend"


async def requeue_in_doubt(session: AsyncSession, send_id: int) -> int:
    """An operator's explicit resend: queue again every delivery of the send in doubt (`unknown`:
    it may have reached the provider). Return how many; some of them may be sent twice."""
    result = await session.execute(update(Delivery).where(
        Delivery.send_id == send_id, Delivery.status == RESENDABLE,
    ).values(status=DeliveryStatus.QUEUED, reason=None, error=RESENT))
    return int(cast(CursorResult[Any], result).rowcount or 0)


async def mark_planned(session: AsyncSession, send_id: int, now: datetime) -> None:
    await session.execute(update(Send).where(Send.id == send_id).values(planned_at=now))
