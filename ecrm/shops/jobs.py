"""Mapping stored webhooks: the `map_webhook` job, and `map_pending` for retries.

A webhook is claimed by the first statement of its transaction (an UPDATE that skips mapped
rows), so two mappers of one webhook (the job and `ecrm shop retry`) apply it once, on SQLite
as on PostgreSQL. A failure rolls everything back and is then recorded on the row, with its
error, as `failed`: nothing acknowledged is lost, and `ecrm shop retry` maps it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.errors import WebhookPayloadError
from ecrm.runtime import JobContext
from ecrm.settings import Settings
from ecrm.shops.apply import apply_changes
from ecrm.shops.models import ReceivedWebhook, WebhookStatus
from ecrm.shops.registry import CONNECTORS

logger = logging.getLogger(__name__)
MAX_ERROR = 2000


async def map_webhook_job(ctx: JobContext, webhook_id: int) -> str:
    runtime = ctx["runtime"]
    return await map_webhook(runtime.sessions, runtime.settings, webhook_id, runtime.clock.now())


async def map_webhook(sessions: async_sessionmaker[AsyncSession], settings: Settings, webhook_id: int,
                      now: datetime) -> str:
    """Map one stored webhook at `now`; its status after (`mapped`, `failed`, or `mapped` when
    it already was)."""
    try:
        async with sessions.begin() as session:
            claimed = await _claim(session, webhook_id)
            if claimed is None:
                return WebhookStatus.MAPPED.value
            provider, topic, body = claimed
            changes = CONNECTORS[provider](settings).map(topic, _payload(body))
            await apply_changes(session, changes, now)
            await session.execute(update(ReceivedWebhook).where(ReceivedWebhook.id == webhook_id).values(
                status=WebhookStatus.MAPPED.value, body=None, error=None, mapped_at=now))
    except Exception as exc:
        logger.warning("webhook %d not mapped: %s", webhook_id, exc, exc_info=not isinstance(exc, WebhookPayloadError))
        await _record_failure(sessions, webhook_id, exc)
        return WebhookStatus.FAILED.value
    return WebhookStatus.MAPPED.value


async def _claim(session: AsyncSession, webhook_id: int) -> tuple[str, str, str] | None:
    stmt = (update(ReceivedWebhook)
            .where(ReceivedWebhook.id == webhook_id, ReceivedWebhook.status != WebhookStatus.MAPPED.value)
            .values(attempts=ReceivedWebhook.attempts + 1)
            .returning(ReceivedWebhook.provider, ReceivedWebhook.topic, ReceivedWebhook.body))
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None or row.body is None else (row.provider, row.topic, row.body)


def _payload(body: str) -> dict[str, Any]:
    document = json.loads(body, parse_float=Decimal)  # stored only after it parsed as an object
    if not isinstance(document, dict):
        raise WebhookPayloadError("the payload is not a JSON object")
    return document


async def _record_failure(sessions: async_sessionmaker[AsyncSession], webhook_id: int, exc: Exception) -> None:
    message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    async with sessions.begin() as session:
        await session.execute(update(ReceivedWebhook).where(ReceivedWebhook.id == webhook_id).values(
            status=WebhookStatus.FAILED.value, error=message, attempts=ReceivedWebhook.attempts + 1))


async def pending_webhooks(sessions: async_sessionmaker[AsyncSession], received_before: datetime,
                           limit: int = 10_000) -> Sequence[int]:
    """Failed webhooks, and those received before `received_before` and still not mapped (their
    job was lost, e.g. with the process that held it), oldest first."""
    stmt = (select(ReceivedWebhook.id)
            .where((ReceivedWebhook.status == WebhookStatus.FAILED.value)
                   | ((ReceivedWebhook.status == WebhookStatus.RECEIVED.value)
                      & (ReceivedWebhook.received_at < received_before)))
            .order_by(ReceivedWebhook.id).limit(limit))
    async with sessions() as session:
        return list(await session.scalars(stmt))


async def map_pending(sessions: async_sessionmaker[AsyncSession], settings: Settings, received_before: datetime,
                      now: datetime) -> dict[str, int]:
    """Map every pending webhook again; how many ended mapped and failed."""
    counts = {WebhookStatus.MAPPED.value: 0, WebhookStatus.FAILED.value: 0}
    for webhook_id in await pending_webhooks(sessions, received_before):
        counts[await map_webhook(sessions, settings, webhook_id, now)] += 1
    return counts
