"""`GET /health`: 200 when the database answers `SELECT 1`, 503 when it does not."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ecrm.api.keys import ENGINE

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
TIMEOUT = 5.0


@routes.get("/health")
async def get_health(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(TIMEOUT), request.app[ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("health check: database unreachable: %s", exc)
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})
