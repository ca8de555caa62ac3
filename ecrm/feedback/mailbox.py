"""Delivery receipts from a local mailbox folder (the demo's loopback SMTP server).

Each captured `.eml` file is a message that reached its mailbox; its Message-ID names the
delivery (see `ecrm.render.message_id`), which moves from `sent` to `delivered`. Provider webhooks will feed the same
transition later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.db import utcnow
from ecrm.deliveries.models import DELIVERIES
from ecrm.render.message_id import MessageIds

_MARK_DELIVERED = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id == bindparam("b_id"), DELIVERIES.c.status == "sent")
    .values(status="delivered", delivered_at=bindparam("b_now"))
)


def read_message_ids(folder: Path) -> list[str]:
    parser = BytesHeaderParser()
    ids = []
    for path in sorted(folder.glob("*.eml")):
        with path.open("rb") as handle:
            message_id = parser.parse(handle)["Message-ID"]
        if message_id:
            ids.append(str(message_id).strip())
    return ids


async def mark_delivered(sessions: async_sessionmaker[AsyncSession], ids: MessageIds,
                         message_ids: Iterable[str]) -> int:
    """Move the deliveries these Message-IDs name to `delivered`; IDs not ours are ignored."""
    now = utcnow()
    deliveries = (ids.delivery_of(mid) for mid in message_ids)
    rows = [{"b_id": delivery_id, "b_now": now} for delivery_id in deliveries if delivery_id is not None]
    if not rows:
        return 0
    async with sessions.begin() as session:
        await session.execute(_MARK_DELIVERED, rows)
    return len(rows)


async def apply_mailbox(sessions: async_sessionmaker[AsyncSession], ids: MessageIds, folder: Path) -> int:
    message_ids = await asyncio.to_thread(read_message_ids, folder)
    return await mark_delivered(sessions, ids, message_ids)
