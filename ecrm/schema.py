"""Check that a database carries this version's schema before any command uses it."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.db import alembic_config
from ecrm.errors import EcrmError


class SchemaError(EcrmError):
    pass


async def ensure_schema(engine: AsyncEngine) -> None:
    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        revision = await conn.run_sync(current)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision != head:
        state = "is not initialised" if revision is None else f"is at schema {revision}, this ecrm needs {head}"
        raise SchemaError(f"the database {engine.url.render_as_string(hide_password=True)} {state}: "
                          "run `ecrm init` first")
