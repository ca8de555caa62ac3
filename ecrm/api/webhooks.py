"""`POST /webhooks/{provider}`: a shop's webhook, verified, stored, acknowledged, mapped later.

The route is public (no API key): the shop's signature is the proof. The order matters: the
signature is checked over the raw body before anything is parsed, the body must be a UTF-8
JSON object within the depth limit, and the row is committed before the 2xx, so a shop never
hears "received" for something not stored. A redelivery (same delivery id) is answered 200 and
not stored again. Mapping runs as the `map_webhook` job: on the worker with Redis, in this
process without it. A job lost with a dead process, or never queued (Redis down), is mapped by
`ecrm shop retry`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ecrm.api.keys import CLOCK, ENGINE, SESSIONS, SETTINGS, SHOP_JOBS
from ecrm.api.raw_json import json_object
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError, WebhookPayloadError, WebhookSignatureError
from ecrm.queue import InProcessQueue, LazyArqQueue
from ecrm.runtime import open_runtime
from ecrm.shops.base import ShopConnector
from ecrm.shops.jobs import map_webhook_job
from ecrm.shops.registry import CONNECTORS
from ecrm.shops.store import record_webhook

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
MAP_JOB = "map_webhook"


@routes.post("/webhooks/{provider}")
@operation("A shop's webhook (shopify, woocommerce), signed by the shop; stored, then mapped",
           responses={200: None, 401: ErrorOut, 404: ErrorOut,
                       400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_webhook(request: web.Request) -> web.Response:
    connector = _connector(request)
    raw = await _raw_body(request)
    if connector.is_ping(raw, request.headers):
        return web.json_response({"ok": True, "stored": False})
    try:
        connector.verify(raw, request.headers)
        delivery = connector.delivery(request.headers)
    except WebhookSignatureError as exc:
        raise ApiError(401, str(exc)) from None
    except WebhookPayloadError as exc:
        raise ApiError(400, str(exc), field=exc.field) from None
    body, _ = json_object(raw, request.charset)
    async with request.app[SESSIONS].begin() as session:
        webhook_id = await record_webhook(session, connector.provider, delivery, body, request.app[CLOCK].now())
    if webhook_id is None:
        return web.json_response({"ok": True, "duplicate": True})
    await _enqueue(request.app, webhook_id)
    return web.json_response({"ok": True, "id": webhook_id})


def _connector(request: web.Request) -> ShopConnector:
    provider = request.match_info["provider"]
    factory = CONNECTORS.get(provider)
    if factory is None:
        raise ApiError(404, f"no shop connector is named {provider[:40]!r}; the shops are {', '.join(CONNECTORS)}")
    return factory(request.app[SETTINGS])


async def _raw_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"the body is larger than the limit of {request.client_max_size} bytes") from exc


async def _enqueue(app: web.Application, webhook_id: int) -> None:
    try:
        await app[SHOP_JOBS].enqueue(MAP_JOB, webhook_id)
    except Exception:  # stored already: `ecrm shop retry` maps what no job did
        logger.exception("webhook %d stored but not queued for mapping", webhook_id)


async def shop_jobs(app: web.Application) -> AsyncIterator[None]:
    """The queue the mapping jobs go to: arq's with Redis, else this process's own."""
    settings = app[SETTINGS]
    if settings.redis_url:
        app[SHOP_JOBS] = redis = LazyArqQueue(settings.redis_url)
        yield
        await redis.close()
        return
    queue = InProcessQueue({MAP_JOB: map_webhook_job}, max_tries=1, clock=app[CLOCK])
    queue.ctx["runtime"] = runtime = open_runtime(settings, queue, engine=app[ENGINE], clock=app[CLOCK])
    app[SHOP_JOBS] = queue
    yield
    await queue.join()
    await runtime.close()
