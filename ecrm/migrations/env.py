"""Alembic environment: runs on a connection handed in by `ecrm.db.migrate`, or on ECRM's URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from ecrm.db import Base, create_engine
from ecrm.models import load_all
from ecrm.settings import load_settings

load_all()
target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine(load_settings().database_url)
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
else:
    asyncio.run(run_online())
