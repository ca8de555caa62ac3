"""Storing verified webhooks on PostgreSQL on a raw asyncpg pool: `store.record_webhooks` as one
prepared statement run on its own, with no BEGIN and COMMIT around it.

A statement outside a transaction block is its own transaction: when asyncpg returns its rows,
PostgreSQL has committed them (durable under `synchronous_commit`, as a COMMIT would be), and
if it fails nothing of it stays. So a flush costs one round trip instead of three, and none of
SQLAlchemy's execution layer (the API's server shares its cores with PostgreSQL). The statement
has one array parameter per column, so it is prepared once per connection whatever the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ecrm.pg_pool import LazyPool
from ecrm.shops.models import WebhookStatus
from ecrm.shops.store import WebhookWrite, answers, first_copies

POOL_SIZE = 4  # one connection per concurrent group-commit flush (group_commit.CONCURRENCY)

_INSERT = (
    "INSERT INTO received_webhooks (provider, delivery_id, topic, shop, body, status, attempts, received_at) "
    f"SELECT u.provider, u.delivery_id, u.topic, u.shop, u.body, '{WebhookStatus.RECEIVED.value}', 0, u.received_at "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY "
    "AS u(provider, delivery_id, topic, shop, body, received_at, n) ORDER BY u.n "
    "ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING provider, delivery_id, id")


class PgWebhookStore:
    def __init__(self, database_url: str, pool_size: int = POOL_SIZE) -> None:
        self._pool = LazyPool(database_url, pool_size, reset=_keep_session)

    async def record(self, writes: Sequence[WebhookWrite]) -> list[int | None]:
        """`store.record_webhooks`, committed when it returns."""
        rows = first_copies(writes)
        async with (await self._pool.get()).acquire() as connection:
            inserted = await connection.fetch(
                _INSERT, [w.provider for w in rows], [w.delivery.id for w in rows], [w.delivery.topic for w in rows],
                [w.delivery.shop for w in rows], [w.body for w in rows], [w.received_at for w in rows])
        return answers(writes, ((row[0], row[1], row[2]) for row in inserted))

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the insert sets no session state,
    and asyncpg's default reset costs a round trip per flush."""
