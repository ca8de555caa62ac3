"""Storing verified webhooks before they are acknowledged, once per (provider, delivery id)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.profiles.arrays import TEXTS, TIMES, is_postgresql
from ecrm.shops.base import Delivery
from ecrm.shops.models import ReceivedWebhook, WebhookStatus

WEBHOOKS = cast(Table, ReceivedWebhook.__table__)  # Core: no ORM cost per row
# On PostgreSQL one statement for any number of rows, prepared once per connection (profiles.arrays)
_INSERT = text(
    "INSERT INTO received_webhooks (provider, delivery_id, topic, shop, body, status, attempts, received_at) "
    f"SELECT u.provider, u.delivery_id, u.topic, u.shop, u.body, '{WebhookStatus.RECEIVED.value}', 0, u.received_at "
    "FROM unnest(:providers, :delivery_ids, :topics, :shops, :bodies, :received) WITH ORDINALITY "
    "AS u(provider, delivery_id, topic, shop, body, received_at, n) ORDER BY u.n "
    "ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING provider, delivery_id, id"
).bindparams(*(bindparam(name, type_=TEXTS) for name in ("providers", "delivery_ids", "topics", "shops", "bodies")),
             bindparam("received", type_=TIMES))


@dataclass(frozen=True)
class WebhookWrite:
    """One verified delivery to store: its shop, what the headers say, its body as text."""

    provider: str
    delivery: Delivery
    body: str
    received_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.provider, self.delivery.id


async def record_webhook(session: AsyncSession, provider: str, delivery: Delivery, body: str,
                         now: datetime) -> int | None:
    """The new row's id, or None when this delivery was recorded before (a redelivery)."""
    return (await record_webhooks(session, [WebhookWrite(provider, delivery, body, now)]))[0]


async def record_webhooks(session: AsyncSession, writes: Sequence[WebhookWrite]) -> list[int | None]:
    """Store `writes` in one statement; for each, its new row's id, or None when its delivery was
    stored before, by another transaction or earlier in `writes` (the first copy is the one kept)."""
    return answers(writes, await _insert(session, first_copies(writes)))


def first_copies(writes: Sequence[WebhookWrite]) -> list[WebhookWrite]:
    """`writes` without the later copies of a delivery, in order."""
    rows: dict[tuple[str, str], WebhookWrite] = {}
    for write in writes:
        rows.setdefault(write.key, write)
    return list(rows.values())


def answers(writes: Sequence[WebhookWrite], inserted: Iterable[tuple[str, str, int]]) -> list[int | None]:
    """For each of `writes`, the id `inserted` gives its key, to its first copy only."""
    stored = {(provider, delivery_id): webhook_id for provider, delivery_id, webhook_id in inserted}
    return [stored.pop(write.key, None) for write in writes]


async def _insert(session: AsyncSession, writes: list[WebhookWrite]) -> Sequence[tuple[str, str, int]]:
    """Insert the rows of `writes` but those stored before; (provider, delivery id, id) of each one inserted."""
    if is_postgresql(session):
        params = {"providers": [w.provider for w in writes], "delivery_ids": [w.delivery.id for w in writes],
                  "topics": [w.delivery.topic for w in writes], "shops": [w.delivery.shop for w in writes],
                  "bodies": [w.body for w in writes], "received": [w.received_at for w in writes]}
        return [(p, d, i) for p, d, i in await session.execute(_INSERT, params)]
    stmt = dialect_insert(session, WEBHOOKS).on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
    table = WEBHOOKS.c
    values = [{"provider": w.provider, "delivery_id": w.delivery.id, "topic": w.delivery.topic,
               "shop": w.delivery.shop, "body": w.body, "status": WebhookStatus.RECEIVED.value, "attempts": 0,
               "received_at": w.received_at} for w in writes]
    result = await session.execute(stmt.returning(table.provider, table.delivery_id, table.id), values)
    return [(p, d, i) for p, d, i in result]
