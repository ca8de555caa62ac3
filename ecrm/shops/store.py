"""Storing a verified webhook before it is acknowledged, once per (provider, delivery id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.shops.base import Delivery
from ecrm.shops.models import ReceivedWebhook, WebhookStatus


async def record_webhook(session: AsyncSession, provider: str, delivery: Delivery, body: str,
                         now: datetime) -> int | None:
    """The new row's id, or None when this delivery was recorded before (a redelivery)."""
    stmt = dialect_insert(session, ReceivedWebhook).values(
        provider=provider, delivery_id=delivery.id, topic=delivery.topic, shop=delivery.shop, body=body,
        status=WebhookStatus.RECEIVED.value, attempts=0, received_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
    return await session.scalar(stmt.returning(ReceivedWebhook.id))
