"""Delivery receipts from a local mailbox folder (the demo's loopback SMTP server).

Each captured `.eml` file is a message that reached its mailbox; its Message-ID names the
delivery, which moves from `sent` to `delivered`. Provider webhooks will feed the same
transition later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.db import utcnow
from ecrm.deliveries.models import Delivery

DELIVERIES = cast(Table, Delivery.__table__)
_MARK_DELIVERED = (
    update(DELIVERIES)
    .where(DELIVERIES.c.provider_message_id == bindparam("b_mid"), DELIVERIES.c.status == "sent")
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


async def mark_delivered(sessions: async_sessionmaker[AsyncSession], message_ids: Iterable[str]) -> int:
    now = utcnow()
    rows = [{"b_mid": mid, "b_now": now} for mid in message_ids]
    if not rows:
        return 0
    async with sessions.begin() as session:
        await session.execute(_MARK_DELIVERED, rows)
    return len(rows)


async def apply_mailbox(sessions: async_sessionmaker[AsyncSession], folder: Path) -> int:
    ids = await asyncio.to_thread(read_message_ids, folder)
    return await mark_delivered(sessions, ids)
