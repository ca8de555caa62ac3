"""Delivery receipts from a local mailbox folder (the demo's loopback SMTP server).

Each captured `.eml` file is a message that reached its mailbox; its Message-ID names the
delivery (see `ecrm.render.message_id`), which moves to `delivered` through the delivery state
machine (`ecrm.deliveries.receipts`), as provider webhooks will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.deliveries.receipts import Receipt, apply_receipts
from ecrm.deliveries.states import DeliveryStatus
from ecrm.render.message_id import MessageIds

DELIVERED = (DeliveryStatus.DELIVERED, None)


def read_message_ids(folder: Path) -> list[str]:
    parser = BytesHeaderParser()
    ids = []
    for path in sorted(folder.glob("*.eml")):
        with path.open("rb") as handle:
            message_id = parser.parse(handle)["Message-ID"]
        if message_id:
            ids.append(str(message_id).strip())
    return ids


async def mark_delivered(sessions: async_sessionmaker[AsyncSession], ids: MessageIds, message_ids: Iterable[str],
                         clock: Clock) -> int:
    """Move the deliveries these Message-IDs name to `delivered` where the state machine allows;
    IDs not ours are ignored. Return how many deliveries changed."""
    deliveries = (ids.delivery_of(mid) for mid in message_ids)
    receipts = [Receipt(delivery_id, DELIVERED) for delivery_id in deliveries if delivery_id is not None]
    return await apply_receipts(sessions, receipts, clock.now()) if receipts else 0


async def apply_mailbox(sessions: async_sessionmaker[AsyncSession], ids: MessageIds, folder: Path,
                        clock: Clock) -> int:
    message_ids = await asyncio.to_thread(read_message_ids, folder)
    return await mark_delivered(sessions, ids, message_ids, clock)
