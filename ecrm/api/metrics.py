"""`GET /metrics` (Prometheus text format, public like /health; it holds counts, no personal
data) and the middleware that counts every answered request by route, method and status."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ecrm import metrics
from ecrm.api.errors import CLIENT_CLOSED
from ecrm.api.keys import SETTINGS
from ecrm.api.spec import operation

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
QUEUE_TIMEOUT = 2.0


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client hung up and the server cancels handlers then
        status = CLIENT_CLOSED
        raise
    finally:
        metrics.REQUESTS.labels(_route(request), request.method, str(status)).inc()


@routes.get("/metrics")
@operation("Prometheus metrics (text)", responses={200: None}, content_type="text/plain")
async def get_metrics(request: web.Request) -> web.Response:
    redis_url = request.app[SETTINGS].redis_url
    if redis_url:
        await _read_queue_depth(redis_url)
    body, content_type = await asyncio.to_thread(metrics.exposition)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _read_queue_depth(redis_url: str) -> None:
    from arq.constants import default_queue_name
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    try:
        async with asyncio.timeout(QUEUE_TIMEOUT), Redis.from_url(redis_url) as redis:
            metrics.QUEUE_JOBS.set(await redis.zcard(default_queue_name))
    except (OSError, TimeoutError, RedisError) as exc:
        logger.warning("metrics: could not read the queue's depth from Redis: %s", exc)
