"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.db import Base, alembic_config, migrate
from ecrm.models import load_all


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    load_all()

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrading_a_database_with_data_keeps_every_row_and_link(engine: AsyncEngine) -> None:
    """Migrations 0003-0005 rebuild `deliveries` on SQLite; responses must still point at their
    delivery afterwards (a rebuild with foreign keys on would have set them to NULL)."""

    def downgrade(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")

    async with engine.begin() as conn:
        await conn.run_sync(downgrade)
        for statement in (
            "INSERT INTO profiles (id, external_id, email, locale, time_zone, traits, created_at, updated_at) "
            "VALUES (1, 'p-1', 'a@example.com', 'en', 'UTC', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO campaigns (id, name, source, spec, created_at, updated_at) "
            "VALUES (1, 'c', 'c.yaml', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO campaign_runs (id, campaign_id, run_key, spec, status, scheduled_at, plans) "
            "VALUES (1, 1, 'now', '{}', 'done', CURRENT_TIMESTAMP, 1)",
            "INSERT INTO deliveries (id, run_id, batch, profile_id, channel, variant, idempotency_key, status, "
            "attempts, queued_at) VALUES (7, 1, 0, 1, 'email', 'default', '1:main:1:email', 'sent', 1, "
            "CURRENT_TIMESTAMP)",
            "INSERT INTO responses (delivery_id, profile_id, kind, properties, occurred_at) "
            "VALUES (7, 1, 'unsubscribed', '{}', CURRENT_TIMESTAMP)",
        ):
            await conn.execute(text(statement))
    await migrate(engine)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT id, status FROM deliveries"))).all() == [(7, "sent")]
        assert (await conn.execute(text("SELECT delivery_id FROM responses"))).all() == [(7,)]
