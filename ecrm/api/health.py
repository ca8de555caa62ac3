"""`GET /health`: ready (200) when the database answers and carries the schema this ecrm
needs; otherwise not ready (503) with the reason, so a load balancer keeps traffic away.

200: `{"status": "ok", "database": "ok", "schema": "<revision>", "pid": <pid>}`; 503:
`{"status": "not ready", "database": "unreachable"|"ok", "schema": ..., "reason": "..."}`.
The pid tells apart the processes of `ecrm serve --workers N`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os

from aiohttp import web
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from ecrm.api.keys import ENGINE
from ecrm.api.spec import operation
from ecrm.db import alembic_config

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
TIMEOUT = 5.0


@functools.cache
def schema_head() -> str | None:
    """The schema revision this ecrm needs (the newest migration); read once from the package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _not_ready(database: str, schema: str | None, reason: str) -> web.Response:
    body = {"status": "not ready", "database": database, "schema": schema, "reason": reason}
    return web.json_response(body, status=503)


@routes.get("/health")
@operation("Whether the database answers and carries this ecrm's schema", responses={200: None, 503: None})
async def get_health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        async with asyncio.timeout(TIMEOUT), engine.connect() as conn:
            revision = await conn.run_sync(_revision)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("health check: database unreachable: %s", exc)
        return _not_ready("unreachable", None, "the database does not answer")
    head = schema_head()
    if revision is None:
        return _not_ready("ok", None, "the database has no ecrm schema: run `ecrm init`")
    if revision != head:
        return _not_ready("ok", revision, f"the database is at schema {revision}, this ecrm needs {head}: "
                                          "run `ecrm init`")
    return web.json_response({"status": "ok", "database": "ok", "schema": revision, "pid": os.getpid()})
