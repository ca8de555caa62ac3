"""Receipts that name a message the send has not recorded yet, kept until it has.

A provider may report on a message before the send wrote its id: Twilio can post a status
callback while the chunk that sent the message is still being recorded. Such a receipt is
kept (`EarlyReceipt`) instead of dropped, and applied once the delivery carries that message
id: by the send job right after it recorded its batch (`settle`), and by the callback itself
just after keeping it, whichever comes second. Between them every order is covered: if the
send's settling ran before the receipt was kept, the send's write of the id had already
committed, so the callback's own second look finds it. On PostgreSQL each statement sees what
committed before it began, so the id may land between the callback's update (which missed it)
and its look at the row; the callback then applies the receipt again rather than calling it
a repeat.

A delivery left `unknown` (a sender killed while handing it over) has no message id to wait
for: the provider's report on it is the evidence the state machine waits for, so it takes the
message id from the receipt and the receipt applies at once.

Applying goes through `deliveries.receipts` (the state machine), so a receipt applied twice,
or after a later one, changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.deliveries.models import Delivery, EarlyReceipt
from ecrm.deliveries.receipts import Receipt, apply_in
from ecrm.deliveries.states import DeliveryStatus, Reason


class Taken(StrEnum):
    APPLIED = "applied"  # the delivery moved
    UNCHANGED = "unchanged"  # the state machine refused it: a repeat, or older than what is stored
    KEPT = "kept"  # the message is not recorded yet: applied when it is
    UNKNOWN = "unknown"  # no such delivery (erased since), or another message of it


async def take_receipt(sessions: async_sessionmaker[AsyncSession], receipt: Receipt, now: datetime) -> Taken:
    """Apply `receipt` (which names its message) or keep it for when the message is recorded."""
    async with sessions.begin() as session:
        if await apply_in(session, [receipt], now):
            return Taken.APPLIED
        stored = await session.execute(select(Delivery.provider_message_id, Delivery.status)
                                       .where(Delivery.id == receipt.delivery_id))
        row = stored.one_or_none()
        if row is None or (row[0] is not None and row[0] != receipt.provider_message_id):
            return Taken.UNKNOWN
        if row[0] is not None:  # recorded by now: committed after the first look (read committed) or refused
            return Taken.APPLIED if await apply_in(session, [receipt], now) else Taken.UNCHANGED
        if row[1] == DeliveryStatus.UNKNOWN:
            return await _settle_in_doubt(session, receipt, now)
        status, reason = receipt.state
        session.add(EarlyReceipt(delivery_id=receipt.delivery_id, provider_message_id=receipt.provider_message_id,
                                 status=status.value, reason=reason.value if reason else None,
                                 detail=receipt.detail, received_at=now))
    await settle(sessions, receipt.delivery_id, receipt.delivery_id, now)
    return Taken.KEPT


async def _settle_in_doubt(session: AsyncSession, receipt: Receipt, now: datetime) -> Taken:
    """A delivery left `unknown` (its sender died handing it over) that the provider reports on
    was sent, as this message: the receipt names the delivery only because the send gave it
    that delivery's callback, so the message id is taken from it and the receipt applied."""
    await session.execute(update(Delivery).where(Delivery.id == receipt.delivery_id,
                                                 Delivery.status == DeliveryStatus.UNKNOWN.value,
                                                 Delivery.provider_message_id.is_(None))
                          .values(provider_message_id=receipt.provider_message_id))
    return Taken.APPLIED if await apply_in(session, [receipt], now) else Taken.UNCHANGED


async def settle(sessions: async_sessionmaker[AsyncSession], first: int, last: int, now: datetime) -> int:
    """Apply the kept receipts of deliveries `first`..`last` whose message is now recorded, in
    the order they arrived, and forget them; return how many were settled."""
    async with sessions.begin() as session:
        rows = (await session.execute(
            select(EarlyReceipt, Delivery.provider_message_id).join(Delivery, Delivery.id == EarlyReceipt.delivery_id)
            .where(EarlyReceipt.delivery_id.between(first, last), Delivery.provider_message_id.is_not(None))
            .order_by(EarlyReceipt.id))).all()
        if not rows:
            return 0
        await apply_in(session, [_receipt(kept) for kept, recorded in rows if recorded == kept.provider_message_id],
                       now)
        await session.execute(delete(EarlyReceipt).where(EarlyReceipt.id.in_([kept.id for kept, _ in rows])))
    return len(rows)


async def kept_for(session: AsyncSession, delivery_id: int) -> list[EarlyReceipt]:
    return list(await session.scalars(select(EarlyReceipt).where(EarlyReceipt.delivery_id == delivery_id)))


def _receipt(kept: EarlyReceipt) -> Receipt:
    state = (DeliveryStatus(kept.status), Reason(kept.reason) if kept.reason else None)
    return Receipt(kept.delivery_id, state, kept.detail, kept.provider_message_id)
